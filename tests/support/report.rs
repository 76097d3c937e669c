//! What a command printed, for the assertions of the tests that run the product's programs.
#![allow(dead_code)]

use serde_json::Value;
use std::process::Output;

/// Exit code, standard output and standard error, for a failure's message.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The checks that did not pass, one line each: put first in a failure's message, so a
/// truncated log still says which check failed and why.
pub fn not_passed(report: &Value) -> String {
    report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["status"] != "pass")
                .map(|c| {
                    format!(
                        "{} {}: {} | {} | {}\n",
                        c["status"], c["id"], c["summary"], c["detail"], c["fix"]
                    )
                })
                .collect::<String>()
        })
        .unwrap_or_else(|| format!("no checks in the report; error: {}\n", report["error"]))
}

/// A command's exit 0, failing with the checks that did not pass first, then its whole report
/// and output.
pub fn assert_exit_0(out: &Output, report: &Value) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "not passed:\n{}{report:#}\n{}",
        not_passed(report),
        text(out)
    );
}

/// The JSON document a command printed on standard output.
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON on stdout ({e}):\n{}", text(out)))
}
