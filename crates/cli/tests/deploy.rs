//! deploy/ is what `flotilla deploy` generates: CI fails when a service was
//! added or changed without running it again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use flotilla_cli::SERVICES;
use flotilla_cli::deploy::{Target, write};

const UPDATE: &str = "deploy/ is out of date: run `cargo run -- deploy` to update it";

/// The files of deploy/ that are written by hand, not generated.
const HAND_WRITTEN: &[&str] = &[
    "Dockerfile",
    "Dockerfile.dockerignore",
    "README.md",
    "check.py",
    "k8s/secret.example.yaml",
];

fn repository_deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// `path` under `dir`, with `/` between components.
fn relative(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).expect("under the directory");
    let parts: Vec<_> = relative.iter().map(|c| c.to_string_lossy()).collect();
    parts.join("/")
}

/// Every file under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.insert(relative(dir, &path));
            }
        }
    }
    found
}

fn expected_files() -> BTreeSet<String> {
    let mut expected: BTreeSet<String> = [
        "compose.yaml",
        "gateway.toml",
        "prometheus/prometheus.yml",
        "k8s/namespace.yaml",
        "k8s/config.yaml",
        "k8s/gateway.yaml",
        "k8s/kustomization.yaml",
    ]
    .map(String::from)
    .into();
    for entry in SERVICES {
        expected.insert(format!("k8s/{}.yaml", entry.name));
        expected.insert(format!("k8s/{}-hpa.yaml", entry.name));
    }
    expected
}

#[test]
fn deploy_holds_exactly_what_flotilla_deploy_generates() {
    let out = tempfile::tempdir().expect("temporary directory");
    let written = write(out.path(), Target::All).expect("files written");
    let generated: BTreeSet<String> = written.iter().map(|p| relative(out.path(), p)).collect();
    assert_eq!(generated, expected_files(), "the generated files");
    assert_eq!(tree(out.path()), generated, "nothing else is written");

    let deploy = repository_deploy();
    let mut stale = Vec::new();
    for file in &generated {
        let new = std::fs::read(out.path().join(file)).expect("generated file");
        match std::fs::read(deploy.join(file)) {
            Ok(old) if old == new => {}
            Ok(_) => stale.push(format!("deploy/{file} differs")),
            Err(_) => stale.push(format!("deploy/{file} is missing")),
        }
    }
    // A configuration file that is neither generated nor written by hand is
    // left over, for example from a service that was removed.
    for file in tree(&deploy) {
        let config = [".yaml", ".yml", ".toml"]
            .iter()
            .any(|ext| file.ends_with(ext));
        if config && !generated.contains(&file) && !HAND_WRITTEN.contains(&file.as_str()) {
            stale.push(format!(
                "deploy/{file} is not generated any more: delete it"
            ));
        }
    }
    assert!(stale.is_empty(), "{UPDATE}:\n  {}", stale.join("\n  "));
}

#[test]
fn the_hand_written_files_are_there() {
    let deploy = repository_deploy();
    for file in HAND_WRITTEN {
        assert!(deploy.join(file).is_file(), "deploy/{file}");
    }
}

#[test]
fn targets_split_the_files() {
    let compose = flotilla_cli::deploy::files(Target::Compose);
    let k8s = flotilla_cli::deploy::files(Target::K8s);
    assert!(compose.iter().all(|f| !f.path.starts_with("k8s/")));
    assert!(k8s.iter().all(|f| f.path.starts_with("k8s/")));
    let all: BTreeSet<String> = flotilla_cli::deploy::files(Target::All)
        .into_iter()
        .map(|f| f.path)
        .collect();
    let both: BTreeSet<String> = compose.into_iter().chain(k8s).map(|f| f.path).collect();
    assert_eq!(all, both);
}
