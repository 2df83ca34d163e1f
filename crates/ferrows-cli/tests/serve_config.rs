//! `ferrows serve`'s configuration through the real binary: `--help` lists
//! every setting with its default, each setting is reachable by its flag,
//! its `FERROWS_*` variable and its file key, and a flag wins over its
//! variable, which wins over the file, which wins over the default.

use std::process::{Command, Output};

use ferrows_server::Config;
use ferrows_server::config::SETTINGS;

/// `ferrows serve ARGS --print-config` with `env` (and no other `FERROWS_*`
/// variable): the configuration it prints, read back.
fn print_config(args: &[String], env: &[(String, String)]) -> (Config, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrows"));
    command.arg("serve").args(args).arg("--print-config");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("FERROWS_")) {
        command.env_remove(name);
    }
    let output = command.envs(env.iter().cloned()).output().expect("the binary runs");
    let text = success(&output);
    let mut config = Config::default();
    config.apply_toml(&text, "printed").unwrap_or_else(|e| panic!("{e}\n{text}"));
    (config, text)
}

fn success(output: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    stdout.into_owned()
}

/// The demo's configuration with every setting at its sample value (the
/// secrets, which are not printed, left out).
fn every_setting_changed() -> Config {
    let mut config = Config::demo();
    for setting in SETTINGS.iter().filter(|s| !s.secret) {
        setting.set(&mut config, &setting.sample()).unwrap();
    }
    config
}

fn assert_secrets_set(printed: &str) {
    for setting in SETTINGS.iter().filter(|s| s.secret) {
        assert!(printed.contains(&format!("# {} is set (not shown)", setting.key)), "{}:\n{printed}", setting.key);
        assert!(!printed.contains(&setting.sample()), "{} printed:\n{printed}", setting.key);
    }
}

#[test]
fn help_lists_every_setting_with_its_flag_variable_and_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_ferrows")).args(["serve", "--help"]).output().unwrap();
    let help = success(&output);
    for setting in SETTINGS {
        let flag = format!("--{} <{}>", setting.flag, setting.value_name);
        let at = help.find(&flag).unwrap_or_else(|| panic!("{flag} not in --help:\n{help}"));
        // Its entry: up to the next flag.
        let entry = &help[at..];
        let entry = &entry[..entry[2..].find("\n  -").map_or(entry.len(), |end| end + 2)];
        assert!(entry.contains(&format!("[env: {}", setting.env)), "{entry}");
        if let Some(default) = setting.default_text() {
            assert!(entry.contains(&format!("[default: {default}]")), "{entry}");
        }
        assert!(entry.contains(&setting.summary()[..20.min(setting.summary().len())]), "{entry}");
    }
}

#[test]
fn every_setting_is_reachable_by_its_flag() {
    let args: Vec<String> =
        SETTINGS.iter().flat_map(|setting| [format!("--{}", setting.flag), setting.sample()]).collect();
    let (config, printed) = print_config(&args, &[]);
    assert_eq!(config, every_setting_changed(), "{printed}");
    assert_secrets_set(&printed);
}

#[test]
fn every_setting_is_reachable_by_its_variable() {
    let env: Vec<(String, String)> =
        SETTINGS.iter().map(|setting| (setting.env.to_owned(), setting.sample())).collect();
    let (config, printed) = print_config(&[], &env);
    assert_eq!(config, every_setting_changed(), "{printed}");
    assert_secrets_set(&printed);
}

#[test]
fn every_setting_is_reachable_by_its_file_key() {
    let mut expected = Config::default();
    let mut file = String::new();
    for setting in SETTINGS {
        let mut one = Config::default();
        setting.set(&mut one, &setting.sample()).unwrap();
        file.push_str(&one.to_toml().lines().find(|line| line.starts_with(&format!("{} =", setting.key))).map_or_else(
            // A secret: a string.
            || format!("{} = {:?}", setting.key, setting.sample()),
            str::to_owned,
        ));
        file.push('\n');
        if !setting.secret {
            setting.set(&mut expected, &setting.sample()).unwrap();
        }
    }
    let path = std::env::temp_dir().join(format!("ferrows-every-key-{}.toml", std::process::id()));
    std::fs::write(&path, &file).unwrap();
    let (config, printed) = print_config(&["--config".into(), path.display().to_string()], &[]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(config, expected, "{file}\n---\n{printed}");
    assert_secrets_set(&printed);
}

#[test]
fn flags_win_over_variables_which_win_over_the_file_which_wins_over_defaults() {
    let path = std::env::temp_dir().join(format!("ferrows-precedence-{}.toml", std::process::id()));
    std::fs::write(&path, "port = 1001\nmax_subscriptions = 5\nping_interval = 3\n").unwrap();
    let env =
        [("FERROWS_PORT", "1002"), ("FERROWS_MAX_SUBSCRIPTIONS", "6"), ("FERROWS_CONFIG", &path.display().to_string())]
            .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let (config, _) = print_config(&["--port".into(), "1003".into()], &env);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(config.server.port, 1003, "the flag wins");
    assert_eq!(config.limits.max_subscriptions, 6, "the variable wins over the file");
    assert_eq!(config.websocket.ping_interval, std::time::Duration::from_secs(3), "the file wins over the default");
    assert_eq!(config.limits.max_connections, Config::default().limits.max_connections, "the default");
    assert!(config.namespaces.named.is_empty(), "a file replaces the demo's");
}

#[test]
fn bad_values_and_files_are_refused_with_a_clear_message() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_ferrows")).arg("serve").args(args).output().unwrap();
    let output = run(&["--port", "lots"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("'--port <N>'") && stderr.contains("`lots` is not a valid u16"),
        "{stderr}"
    );
    let path = std::env::temp_dir().join(format!("ferrows-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "max_mesage_size = 10\n").unwrap();
    let output = run(&["--config", &path.display().to_string()]);
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("unknown key `max_mesage_size`, did you mean `max_message_size`?"),
        "{stderr}"
    );
    let output = run(&["--tls-cert", "/nonexistent/cert.pem"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("tls_cert and tls_key go together"), "{stderr}");
}
