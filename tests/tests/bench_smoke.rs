//! `scripts/bench_peers.py --smoke` runs end to end against the debug
//! binaries, so the peer benchmark cannot rot between its full runs. The
//! smoke mode uses tiny sizes and measures Studio only. Its figures are not
//! compared, only required to exist, because the script checks each result
//! (points read back, experiments listed, artifact stored, search finished)
//! before it reports a time.

use std::process::Command;

/// One row of the benchmark's markdown table.
struct Row {
    case: String,
    measure: String,
    tool: String,
    median: String,
    note: String,
}

fn rows(table: &str) -> Vec<Row> {
    table
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| case "))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_string())
                .collect();
            assert_eq!(cells.len(), 8, "row with {} cells: {line}", cells.len());
            Row {
                case: cells[0].clone(),
                measure: cells[1].clone(),
                tool: cells[2].clone(),
                median: cells[4].clone(),
                note: cells[7].clone(),
            }
        })
        .collect()
}

fn run_smoke() -> String {
    let script = studio_tests::repository().join("scripts/bench_peers.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg("--smoke")
        .arg("--studio")
        .arg(studio_tests::binary("studio"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("STUDIOML_HOME")
        .env_remove("STUDIOML_SOCKET")
        .output()
        .expect("run python3 scripts/bench_peers.py");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench_peers.py --smoke failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn studio_row<'a>(rows: &'a [Row], case: &str, measure: &str) -> &'a Row {
    rows.iter()
        .find(|row| row.case == case && row.tool == "Studio" && row.measure == measure)
        .unwrap_or_else(|| panic!("no Studio row for case {case} ({measure})"))
}

fn is_seconds(text: &str) -> bool {
    text.parse::<f64>().is_ok_and(|seconds| seconds > 0.0)
}

#[test]
fn smoke_mode_fills_every_case() {
    let stdout = run_smoke();
    assert!(stdout.contains("- Machine: "), "{stdout}");
    assert!(stdout.contains("- Studio: studio "), "{stdout}");
    let rows = rows(&stdout);

    let bare = rows
        .iter()
        .find(|row| row.case == "1" && row.tool == "python3")
        .expect("python3 baseline row");
    assert!(is_seconds(&bare.median), "python3 median {:?}", bare.median);
    let studio_rows = [
        ("1", "trivial run"),
        ("2", "200 points visible"),
        ("2", "200 points visible (metric_value)"),
        ("3", "list all"),
        ("3", "first page of 100"),
        ("4", "snapshot, first"),
        ("4", "snapshot, unchanged"),
        ("5", "grid 4 × 0.1 s, 2 workers"),
    ];
    for (case, measure) in studio_rows {
        let row = studio_row(&rows, case, measure);
        assert!(
            is_seconds(&row.median),
            "case {case} {measure}: median {:?}, note {:?}",
            row.median,
            row.note
        );
    }
    assert!(!stdout.contains("failed:"), "{stdout}");
}
