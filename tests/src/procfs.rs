//! What the benchmarks read of a process from /proc: peak and current RSS, CPU time.

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak RSS (VmHWM), KiB; 0 if the process is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Current RSS (VmRSS), KiB; 0 if the process is gone.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// User + system CPU seconds of a `stat` file's contents (a process's or a thread's): fields
/// 14 and 15, counted after the command name, which may hold spaces.
pub fn cpu_seconds_of_stat(stat: &str) -> f64 {
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (tick(11) + tick(12)) as f64 / 100.0
}

/// User + system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_rss_and_cpu_time() {
        let me = std::process::id();
        // The peak read later is at least the resident size read first.
        let rss = super::rss_kib(me);
        assert!(rss > 0);
        assert!(super::peak_rss_kib(me) >= rss);
        // Spin until the kernel has counted a tick of CPU time (bounded: 5 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while super::cpu_seconds(me) == 0.0 && std::time::Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                x = x.wrapping_add(i * i);
            }
            std::hint::black_box(x);
        }
        assert!(super::cpu_seconds(me) > 0.0);
        assert_eq!(
            super::cpu_seconds_of_stat("1 (a b) S 0 0 0 0 0 0 0 0 0 0 250 50"),
            3.0
        );
    }
}
