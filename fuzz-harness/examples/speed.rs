//! How many harness runs per second over a corpus (to keep the fuzz target fast).
//! `cargo run --release -p fuzz-harness --example speed -- DIR`
fn main() {
    let dir = std::env::args().nth(1).expect("usage: speed DIR");
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect();
    let t = std::time::Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs() < 5 {
        for i in &inputs {
            fuzz_harness::run(i);
            n += 1;
        }
    }
    println!(
        "{:.0} runs/s over {} inputs",
        n as f64 / t.elapsed().as_secs_f64(),
        inputs.len()
    );
}
