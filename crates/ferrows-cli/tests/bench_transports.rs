//! `ferrows bench-transports` against the real binary, small: every
//! transport delivers every publication once, and the results, tables and
//! charts are written.

use std::process::Command;

fn run(args: &[&str]) -> serde_json::Value {
    let out = std::env::temp_dir().join(format!("ferrows-bench-transports-test-{}-{}", std::process::id(), args.len()));
    let status = Command::new(env!("CARGO_BIN_EXE_ferrows"))
        .args(["bench-transports", "--subscribers", "20", "--rates", "5,40", "--duration", "1", "--hold", "0.3"])
        .args(["--poll-interval", "0.2"])
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn")
        .status()
        .expect("the binary runs");
    assert!(status.success(), "bench-transports failed: {status}");
    for file in [
        "transports.md",
        "transports-cpu.svg",
        "transports-bytes.svg",
        "transports-idle.svg",
        "transports-latency-40.svg",
    ] {
        let text = std::fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.len() > 500, "{file}: {text}");
    }
    let json = std::fs::read_to_string(out.join("transports.json")).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    serde_json::from_str(&json).unwrap()
}

fn check(runs: &serde_json::Value, transports: &[&str]) {
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.iter().map(|r| r["transport"].as_str().unwrap()).collect::<Vec<_>>(), transports);
    for run in runs {
        let rates = run["rates"].as_array().unwrap();
        assert_eq!(rates.len(), 2, "{run}");
        for rate in rates {
            let publications = rate["publications"].as_u64().unwrap();
            assert_eq!(rate["deliveries"].as_u64().unwrap(), publications * 20, "{rate}");
            assert_eq!((rate["missing"].as_u64(), rate["duplicated"].as_u64()), (Some(0), Some(0)), "{rate}");
            assert!(rate["bytes_in_per_delivery"].as_f64().unwrap() > 100.0, "{rate}");
            assert!(rate["server_cpu_us_per_delivery"].as_f64().unwrap() > 0.0, "{rate}");
        }
        let polls = ["longpoll", "poll"].contains(&run["transport"].as_str().unwrap());
        assert_eq!(rates[1]["requests_per_s"].as_f64().unwrap() > 0.0, polls, "{run}");
    }
}

#[test]
fn every_transport_delivers_everything_and_the_report_is_written() {
    check(&run(&[]), &["websocket", "sse", "longpoll", "poll"]);
}

#[test]
fn over_tls_too() {
    check(&run(&["--tls", "--transports", "websocket,longpoll"]), &["websocket", "longpoll"]);
}
