//! Every registered service has its place in every generated file.

use super::{Target, comment, describe, files, list};
use crate::registry::SERVICES;

fn text(path: &str) -> String {
    files(Target::All)
        .into_iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} is generated"))
        .text
}

#[test]
fn every_service_is_in_compose() {
    let compose = text("compose.yaml");
    for entry in SERVICES {
        let name = entry.name;
        assert!(
            compose.contains(&format!("\n  {name}:\n")),
            "{name}: service"
        );
        assert!(
            compose.contains(&format!("command: [\"serve\", \"{name}\"]")),
            "{name}: command"
        );
        assert!(
            compose.contains(&format!(
                "      {name}:\n        condition: service_healthy"
            )),
            "{name}: the gateway waits for it"
        );
    }
}

#[test]
fn every_service_has_both_gateway_routes() {
    for path in ["gateway.toml", "k8s/config.yaml"] {
        let config = text(path);
        for entry in SERVICES {
            for prefix in [
                format!("/{}", entry.name),
                format!("/api/v1/{}", entry.name),
            ] {
                assert!(
                    config.contains(&format!("prefix = \"{prefix}\"")),
                    "{path}: {prefix}"
                );
            }
        }
    }
}

#[test]
fn every_service_is_scraped() {
    let prometheus = text("prometheus/prometheus.yml");
    for entry in SERVICES {
        let name = entry.name;
        assert!(
            prometheus.contains(&format!("  - job_name: {name}\n")),
            "{name}"
        );
        assert!(
            prometheus.contains(&format!("- names: [{name}]\n")),
            "{name}"
        );
    }
}

#[test]
fn every_service_is_a_kustomization_resource() {
    let kustomization = text("k8s/kustomization.yaml");
    for entry in SERVICES {
        let name = entry.name;
        for file in [format!("{name}.yaml"), format!("{name}-hpa.yaml")] {
            assert!(kustomization.contains(&format!("  - {file}\n")), "{file}");
            text(&format!("k8s/{file}"));
        }
    }
}

#[test]
fn secrets_are_passed_through_never_written() {
    let compose = text("compose.yaml");
    let manifests: Vec<String> = SERVICES
        .iter()
        .map(|e| text(&format!("k8s/{}.yaml", e.name)))
        .collect();
    for (entry, manifest) in SERVICES.iter().zip(&manifests) {
        for secret in super::secrets(entry) {
            assert!(compose.contains(&format!("      {}:\n", secret.var)));
            assert!(manifest.contains(&format!(
                "key: {}\n                  optional: true\n",
                secret.var
            )));
        }
    }
}

#[test]
fn comments_wrap_at_79_columns() {
    let text = "word ".repeat(40);
    let wrapped = comment(4, &text);
    assert!(
        wrapped
            .lines()
            .all(|l| l.len() <= 79 && l.starts_with("    # "))
    );
    assert_eq!(
        wrapped.split_whitespace().filter(|w| *w == "word").count(),
        40
    );
}

#[test]
fn lists_and_descriptions() {
    assert_eq!(list(&["a"]), "a");
    assert_eq!(list(&["a", "b"]), "a and b");
    assert_eq!(list(&["a", "b", "c"]), "a, b and c");
    assert_eq!(
        describe("A URL. Without one, none. A secret: kept apart").as_deref(),
        Some("A URL. Without one, none.")
    );
    assert_eq!(describe("Only one").as_deref(), Some("Only one."));
    assert_eq!(describe("A secret."), None);
}

#[test]
fn redis_is_there_only_for_a_service_that_needs_it() {
    // The services before the first one given Redis.
    let prefix = SERVICES.iter().take_while(|e| !e.deploy.redis).count();
    assert!(prefix > 0 && prefix < SERVICES.len(), "a case to test");
    let compose = |services| {
        super::files_for(services, Target::Compose)
            .into_iter()
            .find(|f| f.path == "compose.yaml")
            .map(|f| f.text)
            .unwrap_or_default()
    };
    let with_redis = compose(SERVICES);
    assert!(with_redis.contains("\n  redis:\n") && with_redis.contains("  redis-data:\n"));
    let no_redis = compose(&SERVICES[..prefix]);
    assert!(!no_redis.contains("redis"), "{no_redis}");
}
