//! Replay one input and print its configuration and operations first: for reading a crash
//! (`FUZZ_TRACE=1` also prints every input and output of both cores).
//! `cargo run -p fuzz-harness --example replay -- FILE`

fn main() {
    let path = std::env::args().nth(1).expect("usage: replay FILE");
    let data = std::fs::read(&path).expect("read the input");
    let (cfg, ops) = fuzz_harness::input::parse(&data);
    println!("{cfg:?}");
    for o in &ops {
        println!("{o:?}");
    }
    println!("{:?}", fuzz_harness::run(&data));
}
