//! Facts about processes read from `/proc`, so that a pid recorded before a
//! restart is only trusted when it still names the same process.

/// Start time of `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), or `None` when the process does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `after_name` starts at field 3 (state), so field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

/// True when `pid` runs and, if `expected_start` is known, started then.
pub fn is_alive(pid: u32, expected_start: Option<u64>) -> bool {
    match (start_time(pid), expected_start) {
        (Some(actual), Some(expected)) => actual == expected,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id();
        let start = start_time(pid).expect("own start time");
        assert!(is_alive(pid, Some(start)));
        assert!(!is_alive(pid, Some(start + 1)));
    }

    #[test]
    fn missing_process_is_not_alive() {
        assert!(!is_alive(u32::MAX - 1, None));
    }
}
