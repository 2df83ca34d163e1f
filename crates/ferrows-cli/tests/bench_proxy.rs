//! `ferrows bench-proxy` against the real binary, small: both publish
//! paths publish without errors, the publish proxy's backend does the
//! work of the proxied path only, and a storm through a small in-flight
//! bound connects every client with the bound held.

use std::process::Command;

#[test]
fn the_proxy_benchmark_runs_small_and_the_bound_holds() {
    let json = std::env::temp_dir().join(format!("ferrows-bench-proxy-test-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_ferrows"))
        .args(["bench-proxy", "--clients", "4", "--duration", "1", "--storm", "300", "--max-in-flight", "16"])
        .args(["--connect-delay-ms", "20", "--json"])
        .arg(&json)
        .env("RUST_LOG", "warn")
        .status()
        .expect("the binary runs");
    assert!(status.success(), "bench-proxy failed: {status}");
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let paths = results["paths"].as_array().unwrap();
    assert_eq!(paths.iter().map(|p| p["path"].as_str().unwrap()).collect::<Vec<_>>(), ["direct", "proxied"]);
    for path in paths {
        assert!(path["publications"].as_u64().unwrap() > 0, "{path}");
        assert_eq!(path["errors"], 0, "{path}");
    }
    assert!(paths[1]["backend_cpu_us_per_publication"].as_f64().unwrap() > 0.0);
    let storm = &results["storm"];
    assert_eq!(storm["connected"], 300, "{storm}");
    assert!(storm["backend_max_in_flight"].as_u64().unwrap() <= 16, "{storm}");
    // 300 connects of 20 ms through 16 slots cannot all pass at once.
    assert!(storm["temporary_errors"].as_u64().unwrap() > 0, "{storm}");
}
