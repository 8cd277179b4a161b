//! The scale bench's generated deployment (`benches/scale/generate.rs`), small: it loads with the
//! counts it was generated with, and each schema's versions are compatible in its mode, so the
//! generator the bench measures SPEC §12's target with cannot rot. (No timing here: the load
//! time is the bench's, `cargo bench --bench scale`.)

use xgate::config::{self, Overrides};
use xgate_core::domain::Role;
use xgate_core::registry::compatibility;

#[path = "../../benches/scale/generate.rs"]
mod generate;

use generate::Deployment;

const SMALL: Deployment = Deployment {
    departments: 20,
    services: 100,
    schemas: 10,
    versions_per_schema: 5,
};

#[test]
fn a_generated_deployment_loads_with_its_counts() {
    let root = tempfile::tempdir().unwrap();
    let written = generate::write(root.path(), &SMALL).unwrap();
    let (config, registry) = config::load(&written.main, &Overrides::default())
        .unwrap_or_else(|problems| panic!("the generated deployment has problems:\n{problems}"));

    assert_eq!(config.departments.len(), 20);
    let services: Vec<_> = config
        .departments
        .iter()
        .flat_map(|d| &d.services)
        .collect();
    assert_eq!(services.len(), 100);
    assert_eq!(
        config
            .departments
            .iter()
            .filter(|d| d.role == Role::Department)
            .count(),
        18
    );
    assert!(services.iter().all(|service| !service.consumers.is_empty()));
    let with_request = services
        .iter()
        .filter(|s| s.request_schema.is_some())
        .count();
    let with_response = services
        .iter()
        .filter(|s| s.response_schema.is_some())
        .count();
    let pinned = services
        .iter()
        .filter(|s| {
            s.response_schema
                .as_ref()
                .is_some_and(|r| r.version.is_some())
        })
        .count();
    let projected = services.iter().filter(|s| !s.fields.is_empty()).count();
    assert_eq!(
        (with_request, with_response, pinned, projected),
        (33, 67, 3, 3)
    );
    let formats: usize = config.departments.iter().map(|d| d.formats.len()).sum();
    assert!(formats >= 18, "{formats} formats");

    assert_eq!(registry.schemas().count(), 10);
    let versions: usize = registry
        .schemas()
        .map(|(_, entry)| entry.versions.len())
        .sum();
    assert_eq!(versions, 50);
    let sizes: Vec<usize> = registry
        .schemas()
        .flat_map(|(_, entry)| entry.versions.values())
        .map(|compiled| compiled.document["properties"].as_object().unwrap().len())
        .collect();
    assert!(
        sizes.iter().all(|&size| (12..=20).contains(&size)),
        "{sizes:?}"
    );

    // Each next version passes its schema's mode, as a registration would check it.
    let mut modes = std::collections::BTreeSet::new();
    for (name, entry) in registry.schemas() {
        modes.insert(entry.compatibility.as_str());
        let versions: Vec<_> = entry.versions.values().collect();
        for next in 1..versions.len() {
            let earlier: Vec<&_> = versions[..next].iter().map(|v| v.as_ref()).collect();
            let report = compatibility::check(
                entry.compatibility,
                versions[next],
                &earlier,
                registry.documents(),
            );
            assert!(
                report.compatible(),
                "{name} version {} is not {}: {report:?}",
                next + 1,
                entry.compatibility.as_str()
            );
        }
    }
    assert_eq!(
        modes.into_iter().collect::<Vec<_>>(),
        ["backward", "forward", "full", "none"]
    );
}
