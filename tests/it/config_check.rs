//! Configuration loading (SPEC §5, §6): `config::load` and `xgate check` report every problem
//! with its file and key; environment overrides; `$ref`s between registered schema versions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};

use xgate::config::{self, Overrides, Problem};

use crate::helpers::*;

/// The repository's example configuration.
fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/xgate.toml")
}

/// Runs `xgate` with `args` in `folder`, without any `XGATE_*` variable of the test's own
/// environment, plus `env`.
fn xgate(folder: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xgate"));
    command
        .args(args)
        .current_dir(folder)
        .env_remove("XGATE_CONFIG")
        .env_remove("XGATE_LISTEN")
        .env_remove("XGATE_ADMIN_LISTEN");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("xgate runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The problems of loading `path`; the load must fail.
fn problems(path: &Path, overrides: &Overrides) -> Vec<Problem> {
    match config::load(path, overrides) {
        Ok(_) => panic!("{} loaded although it is broken", path.display()),
        Err(problems) => problems.0,
    }
}

/// One problem the report must hold: the file (by how its path ends), the key, part of the reason.
struct Expected {
    file: &'static str,
    key: &'static str,
    reason: &'static str,
}

const fn expected(file: &'static str, key: &'static str, reason: &'static str) -> Expected {
    Expected { file, key, reason }
}

fn assert_reported(problems: &[Problem], expected: &[Expected]) {
    let listing = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for expected in expected {
        assert!(
            problems
                .iter()
                .any(|problem| problem.file.ends_with(expected.file)
                    && problem.key == expected.key
                    && problem.reason.contains(expected.reason)),
            "missing {}: {}: ...{}... in\n{listing}",
            expected.file,
            expected.key,
            expected.reason
        );
    }
}

/// The same problems, as `xgate check` prints them: one line each, `file: key: reason`.
fn assert_printed(text: &str, expected: &[Expected]) {
    for expected in expected {
        let key = if expected.key.is_empty() {
            String::new()
        } else {
            format!(": {}: ", expected.key)
        };
        assert!(
            text.lines().any(|line| line.contains(expected.file)
                && line.contains(&key)
                && line.contains(expected.reason)),
            "missing {}{key}...{}... in\n{text}",
            expected.file,
            expected.reason
        );
    }
}

/// A file under the configuration folder, written as is.
fn write(config: &ConfigDir, relative: &str, text: &str) {
    let path = config.path(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A configuration with one or more problems of every kind `xgate check` knows about (for
/// problems that used to hide each other, see
/// [`one_check_run_reports_problems_that_used_to_hide_each_other`]).
fn broken_config() -> ConfigDir {
    let config = ConfigDir::new()
        .schema("license", 1, license_schema())
        .schema("bad-type", 1, json!({"type": 12}))
        .schema("dangling", 1, json!({"$ref": "urn:xgate:schema:nope:1"}))
        .schema("Bad_Name", 1, json!({"type": "object"}))
        .department("good", "department", "");
    write(&config, "schemas/broken-json/1.json", "{\"type\": ");
    let good_token = std::fs::read_to_string(config.path("config/departments/good.toml")).unwrap();
    let good_token_line = good_token
        .lines()
        .find(|line| line.starts_with("token_sha256"))
        .unwrap();
    // `twin` reuses `good`'s token.
    write(
        &config,
        "config/departments/twin.toml",
        &format!("id = \"twin\"\nname = \"Twin\"\nrole = \"department\"\n{good_token_line}\n"),
    );
    write(
        &config,
        "config/departments/misnamed.toml",
        "id = \"other-name\"\nname = \"Misnamed\"\nrole = \"department\"\n",
    );
    write(
        &config,
        "config/departments/typo.toml",
        "id = \"typo\"\nname = \"Typo\"\nrole = \"department\"\ncolour = \"red\"\n",
    );
    write(
        &config,
        "config/departments/provider.toml",
        r#"
id = "provider"
name = "Provider"
role = "department"
token_sha256 = ["xyz"]

[services.a]
upstream = "ftp://127.0.0.1/files"
methods = []
consumers = ["good"]

[services.b]
upstream = "http://127.0.0.1:9/b"
methods = ["GET"]
response_schema = "license@7"
consumers = ["good", "nobody"]
[services.b.fields]
twin = ["/uscc"]

[services.c]
upstream = "http://127.0.0.1:9/c"
methods = ["POST"]
request_schema = "Bad_Name"
response_schema = "nope"
consumers = ["good"]

[formats.license]
unmapped = "maybe"
fields = [
  { own = "/A", shared = "/uscc", convert = "rot13" },
  { own = "/B/*/C", shared = "/shareholders/name" },
]

[certificates.permit]
lookup = "http://127.0.0.1:9/permits"
schema = "license"
id_format = "cn-nope"
consumers = ["good"]
"#,
    );
    write(
        &config,
        "config/xgate.toml",
        r#"
[gateway]
listen = "not-an-address"
admin_listen = "127.0.0.1:0"

[registry]
dir = "../schemas"

[tls]
cert = "tls/missing.pem"
key = "tls/missing-key.pem"

[audit]
hash = "md5"
"#,
    );
    config
}

/// The files of [`broken_config`], by how their paths end.
const MAIN: &str = "config/xgate.toml";
const PROVIDER: &str = "departments/provider.toml";

const BROKEN_CONFIG_PROBLEMS: &[Expected] = &[
    expected(MAIN, "gateway.listen", "\"not-an-address\""),
    expected(MAIN, "tls.cert", "not a readable file"),
    expected(MAIN, "tls.key", "not a readable file"),
    expected(MAIN, "audit.hash", "\"md5\""),
    expected("departments/typo.toml", "colour", "unknown field `colour`"),
    expected(
        "departments/misnamed.toml",
        "id",
        "must equal the file name",
    ),
    expected(
        "departments/twin.toml",
        "token_sha256",
        "same token is configured for good",
    ),
    expected(PROVIDER, "token_sha256[0]", "64 lowercase hex"),
    expected(PROVIDER, "services.a.upstream", "only http://"),
    expected(PROVIDER, "services.a.methods", "at least one method"),
    expected(
        PROVIDER,
        "services.b.consumers",
        "unknown department nobody",
    ),
    expected(PROVIDER, "services.b.response_schema", "no version 7"),
    expected(
        PROVIDER,
        "services.b.fields.twin",
        "is not one of the consumers",
    ),
    expected(
        PROVIDER,
        "services.c.request_schema",
        "not a valid schema name",
    ),
    expected(
        PROVIDER,
        "services.c.response_schema",
        "unknown schema nope",
    ),
    expected(PROVIDER, "formats.license.unmapped", "\"maybe\""),
    expected(PROVIDER, "formats.license.fields[0].convert", "\"rot13\""),
    expected(
        PROVIDER,
        "formats.license.fields[1]",
        "same number of * segments",
    ),
    expected(PROVIDER, "certificates.permit.lookup", "{id}"),
    expected(PROVIDER, "certificates.permit.id_format", "\"cn-nope\""),
    expected("schemas/broken-json/1.json", "", "not JSON"),
    expected(
        "schemas/bad-type/1.json",
        "",
        "not a valid draft 2020-12 schema",
    ),
    expected("schemas/dangling/1.json", "", "urn:xgate:schema:nope:1"),
    expected("schemas/Bad_Name", "", "not a valid schema name"),
];

#[test]
fn the_example_configuration_checks_ok() {
    let (config, registry) =
        config::load(&example_config(), &Overrides::default()).expect("the example loads");
    assert_eq!(config.departments.len(), 7);
    assert!(registry.get("person", None).is_some());

    let folder = tempfile::tempdir().unwrap();
    let example = example_config();
    let output = xgate(
        folder.path(),
        &["check", "--config", example.to_str().unwrap()],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).contains(": ok ("), "{output:?}");
}

#[test]
fn a_broken_configuration_reports_every_problem_with_file_and_key() {
    let config = broken_config();
    let found = problems(&config.main_path(), &Overrides::default());
    assert_reported(&found, BROKEN_CONFIG_PROBLEMS);
    for problem in &found {
        assert!(problem.file.starts_with(config.dir.path()), "{problem}");
    }

    let output = xgate(
        config.dir.path(),
        &["check", "--config", config.main_path().to_str().unwrap()],
        &[],
    );
    assert!(!output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert_printed(&text, BROKEN_CONFIG_PROBLEMS);
    assert!(
        text.contains(&format!("{} problem(s) found", found.len())),
        "{text}"
    );
}

#[test]
fn an_unreadable_main_file_does_not_hide_the_department_files_problems() {
    let config = ConfigDir::new()
        .main("[audit]\nretention_days = 30")
        .department("good", "department", "");
    config.write_main();
    write(
        &config,
        "config/departments/bad.toml",
        "id = \"bad\"\nname = \"Bad\"\nrole = \"department\"\ntoken_sha256 = [\"XYZ\"]\n",
    );
    let expected = [
        expected(
            "config/xgate.toml",
            "audit.retention_days",
            "unknown field `retention_days`",
        ),
        expected(
            "departments/bad.toml",
            "token_sha256[0]",
            "64 lowercase hex",
        ),
    ];
    assert_reported(
        &problems(&config.main_path(), &Overrides::default()),
        &expected,
    );
    let output = xgate(
        config.dir.path(),
        &["check", "--config", config.main_path().to_str().unwrap()],
        &[],
    );
    assert!(!output.status.success(), "{output:?}");
    assert_printed(&stdout(&output), &expected);
}

/// Problems of every stage of loading, each of which used to hide the next ones: an unknown key
/// or a value of the wrong type (the whole file went unread), a bad upstream URL (its
/// service's schemas went unchecked), anything at all in the main file (the schemas and the
/// TLS files went unread). One run of `xgate check` reports all of them.
#[test]
fn one_check_run_reports_problems_that_used_to_hide_each_other() {
    let config = ConfigDir::new()
        .schema("license", 1, license_schema())
        .department("good", "department", "");
    write(&config, "schemas/broken-json/1.json", "{\"type\": ");
    write(&config, "config/tls/gateway.pem", "not a certificate");
    write(&config, "config/tls/gateway-key.pem", "not a key");
    write(
        &config,
        "config/xgate.toml",
        r#"
[gateway]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
colour = "blue"
max_body_bytes = "a lot"

[tls]
cert = "tls/gateway.pem"
key = "tls/gateway-key.pem"

[audit]
hash = "md5"
"#,
    );
    write(
        &config,
        "config/departments/alpha.toml",
        "id = \"alpha\"\nname = \"Alpha\"\nrole = \"department\"\ncolour = \"red\"\ntoken_sha256 = [\"XYZ\"]\n",
    );
    write(
        &config,
        "config/departments/beta.toml",
        r#"
id = "beta"
name = "Beta"
role = "department"

[services.s]
upstream = "ftp://127.0.0.1/files"
methods = ["POST"]
request_schema = "nope"
consumers = ["good", "nobody"]
timeout = 5
"#,
    );
    write(
        &config,
        "config/departments/gamma.toml",
        r#"
id = "gamma"
name = "Gamma"
role = "department"

[formats.license]
fields = [
  { own = "/A", shared = "/uscc", convert = "rot13" },
]

[certificates.permit]
lookup = "http://127.0.0.1:9/permits"
schema = "permit"
id_format = "cn-uscc"
consumers = ["good"]
"#,
    );
    let expected = [
        expected(MAIN, "gateway.colour", "unknown field `colour`"),
        expected(MAIN, "gateway.max_body_bytes", "invalid type"),
        expected(MAIN, "audit.hash", "\"md5\""),
        expected(MAIN, "tls.cert", ""),
        expected("departments/alpha.toml", "colour", "unknown field `colour`"),
        expected(
            "departments/alpha.toml",
            "token_sha256[0]",
            "64 lowercase hex",
        ),
        expected(
            "departments/beta.toml",
            "services.s.timeout",
            "unknown field `timeout`",
        ),
        expected(
            "departments/beta.toml",
            "services.s.upstream",
            "only http://",
        ),
        expected(
            "departments/beta.toml",
            "services.s.request_schema",
            "unknown schema nope",
        ),
        expected(
            "departments/beta.toml",
            "services.s.consumers",
            "unknown department nobody",
        ),
        expected(
            "departments/gamma.toml",
            "formats.license.fields[0].convert",
            "\"rot13\"",
        ),
        expected(
            "departments/gamma.toml",
            "certificates.permit.lookup",
            "{id}",
        ),
        expected(
            "departments/gamma.toml",
            "certificates.permit.schema",
            "unknown schema permit",
        ),
        expected("schemas/broken-json/1.json", "", "not JSON"),
    ];
    let output = xgate(
        config.dir.path(),
        &["check", "--config", config.main_path().to_str().unwrap()],
        &[],
    );
    assert!(!output.status.success(), "{output:?}");
    assert_printed(&stdout(&output), &expected);
}

#[test]
fn xgate_config_names_the_file_when_no_option_does() {
    // Run where there is no config/xgate.toml, so only the variable can point at one.
    let folder = tempfile::tempdir().unwrap();
    let example = example_config();
    let output = xgate(
        folder.path(),
        &["check"],
        &[("XGATE_CONFIG", example.to_str().unwrap())],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).contains(example.to_str().unwrap()));

    let broken = broken_config();
    let output = xgate(
        folder.path(),
        &["check"],
        &[("XGATE_CONFIG", broken.main_path().to_str().unwrap())],
    );
    assert!(!output.status.success(), "{output:?}");
    assert_printed(&stdout(&output), BROKEN_CONFIG_PROBLEMS);

    // --config wins over the variable.
    let output = xgate(
        folder.path(),
        &["check", "--config", example.to_str().unwrap()],
        &[("XGATE_CONFIG", broken.main_path().to_str().unwrap())],
    );
    assert!(output.status.success(), "{output:?}");

    let output = xgate(folder.path(), &["check"], &[]);
    assert!(
        !output.status.success(),
        "no config/xgate.toml here: {output:?}"
    );
}

#[test]
fn listen_overrides_replace_the_configured_addresses() {
    let overrides = Overrides {
        listen: Some("127.0.0.1:4567".to_owned()),
        admin_listen: Some("[::1]:4568".to_owned()),
        store_url: None,
        instance: None,
    };
    let (config, _) = config::load(&example_config(), &overrides).expect("the example loads");
    assert_eq!(config.gateway.listen.to_string(), "127.0.0.1:4567");
    assert_eq!(config.gateway.admin_listen.to_string(), "[::1]:4568");

    let invalid = Overrides {
        listen: Some("localhost".to_owned()),
        admin_listen: None,
        store_url: None,
        instance: None,
    };
    assert_reported(
        &problems(&example_config(), &invalid),
        &[expected(
            "config/xgate.toml",
            "gateway.listen",
            "\"localhost\" (from the environment)",
        )],
    );

    // The binary reads the overrides from its environment.
    let folder = tempfile::tempdir().unwrap();
    let example = example_config();
    let output = xgate(
        folder.path(),
        &["check", "--config", example.to_str().unwrap()],
        &[("XGATE_ADMIN_LISTEN", "nowhere")],
    );
    assert!(!output.status.success(), "{output:?}");
    assert_printed(
        &stdout(&output),
        &[expected(
            "config/xgate.toml",
            "gateway.admin_listen",
            "\"nowhere\" (from the environment)",
        )],
    );
}

#[tokio::test]
async fn a_schema_may_reference_another_registered_version() {
    let address = json!({
        "type": "object",
        "required": ["city"],
        "properties": {"city": {"type": "string", "minLength": 1}}
    });
    let company = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["name", "address"],
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "urn:xgate:schema:address:1"}
        }
    });
    // Version 2 of `address` requires more; the reference names version 1, so it must not apply.
    let mut address_2 = address.clone();
    address_2["required"] = json!(["city", "street"]);
    let gateway = ConfigDir::new()
        .schema("address", 1, address)
        .schema("address", 2, address_2)
        .schema("company", 1, company)
        .department("tax", "department", "")
        .start()
        .await;
    let validate = |record: Value| {
        gateway
            .call(Method::POST, "/validate/company", "tax")
            .json(&record)
            .send()
    };
    let response = validate(json!({"name": "x", "address": {"city": "福州"}}))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"valid": true, "errors": []}));

    let body: Value = validate(json!({"name": "x", "address": {"city": ""}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["valid"], false);
    assert_eq!(body["errors"][0]["pointer"], "/address/city", "{body}");
    assert_eq!(body["errors"][0]["keyword"], "minLength", "{body}");

    let body: Value = validate(json!({"name": "x", "address": {}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["errors"][0]["pointer"], "/address", "{body}");
    assert_eq!(body["errors"][0]["keyword"], "required", "{body}");
    gateway.stop().await;
}

#[test]
fn unknown_is_not_a_department_id() {
    let config = ConfigDir::new()
        .department("unknown", "department", "")
        .department("good", "department", "");
    config.write_main();
    assert_reported(
        &problems(&config.main_path(), &Overrides::default()),
        &[expected(
            "departments/unknown.toml",
            "id",
            "`unknown` is reserved",
        )],
    );
}

#[test]
fn the_audit_sync_setting_is_one_of_two_words() {
    let config = ConfigDir::new()
        .main("[audit]\nsynchronous = \"sometimes\"")
        .department("good", "department", "");
    config.write_main();
    assert_reported(
        &problems(&config.main_path(), &Overrides::default()),
        &[expected(
            "config/xgate.toml",
            "audit.synchronous",
            "expected full or normal",
        )],
    );
    for word in ["normal", "full"] {
        let config = ConfigDir::new()
            .main(&format!("[audit]\nsynchronous = \"{word}\""))
            .department("good", "department", "");
        config.write_main();
        let (loaded, _) = config::load(&config.main_path(), &Overrides::default()).unwrap();
        let expected = if word == "full" {
            config::AuditSync::Full
        } else {
            config::AuditSync::Normal
        };
        assert_eq!(loaded.audit.synchronous, expected);
    }
}

#[test]
fn the_check_timeout_is_between_a_millisecond_and_an_hour() {
    for value in ["0", "3600001"] {
        let config = ConfigDir::new()
            .main(&format!("check_timeout_ms = {value}"))
            .department("good", "department", "");
        config.write_main();
        assert_reported(
            &problems(&config.main_path(), &Overrides::default()),
            &[expected(
                "config/xgate.toml",
                "registry.check_timeout_ms",
                "must be between 1 and 3600000",
            )],
        );
    }
    let config = ConfigDir::new().department("good", "department", "");
    config.write_main();
    let (loaded, _) = config::load(&config.main_path(), &Overrides::default()).unwrap();
    assert_eq!(
        loaded.registry.check_timeout,
        std::time::Duration::from_secs(10)
    );
}

#[test]
fn the_drain_delay_is_at_most_an_hour_and_five_seconds_by_default() {
    let config = ConfigDir::new()
        .gateway("drain_delay_ms = 3600001")
        .department("good", "department", "");
    config.write_main();
    assert_reported(
        &problems(&config.main_path(), &Overrides::default()),
        &[expected(
            MAIN,
            "gateway.drain_delay_ms",
            "must be between 0 and 3600000",
        )],
    );
    // Absent, it is 5000 (the helpers' files set 0 unless a test names the key).
    let config = ConfigDir::new().gateway("# drain_delay_ms left out");
    config.write_main();
    let example = config::load(&example_config(), &Overrides::default()).unwrap();
    let absent = config::load(&config.main_path(), &Overrides::default()).unwrap();
    for (loaded, _) in [example, absent] {
        assert_eq!(loaded.gateway.drain_delay, Duration::from_secs(5));
    }
}

#[test]
fn purposes_are_codes_of_the_vocabulary_each_once() {
    let config = ConfigDir::new()
        .main(&format!(
            "[purposes]\ntax-assessment = \"税务核定 Tax assessment\"\nBad_Code = \"x\"\nnone = \"reserved\"\nblank = \"  \"\nlong = \"{}\"",
            "长".repeat(201)
        ))
        .department(
            "market",
            "department",
            r#"
[services.assess]
upstream = "http://127.0.0.1:9/"
methods = ["GET"]
consumers = ["tax"]
purposes = ["tax-assessment", "tax-assessment", "benefit-review", "Not A Code"]

[services.empty]
upstream = "http://127.0.0.1:9/"
methods = ["GET"]
consumers = ["tax"]
purposes = []

[certificates.licence]
lookup = "http://127.0.0.1:9/{id}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax"]
purposes = ["licence-check"]
"#,
        )
        .department("tax", "department", "")
        .schema("license", 1, license_schema());
    config.write_main();
    let found = problems(&config.main_path(), &Overrides::default());
    assert_reported(
        &found,
        &[
            expected(
                "config/xgate.toml",
                "purposes.Bad_Code",
                "not a valid purpose code",
            ),
            expected("config/xgate.toml", "purposes.none", "reserved"),
            expected("config/xgate.toml", "purposes.blank", "must not be empty"),
            expected(
                "config/xgate.toml",
                "purposes.long",
                "at most 200 characters",
            ),
            expected("market.toml", "services.assess.purposes[1]", "listed twice"),
            expected(
                "market.toml",
                "services.assess.purposes[2]",
                "unknown purpose benefit-review",
            ),
            expected(
                "market.toml",
                "services.assess.purposes[3]",
                "not a valid purpose code",
            ),
            expected(
                "market.toml",
                "services.empty.purposes",
                "at least one purpose",
            ),
            expected(
                "market.toml",
                "certificates.licence.purposes[0]",
                "unknown purpose licence-check",
            ),
        ],
    );
    assert_eq!(found.len(), 9, "{found:?}");
    let output = xgate(
        &config.path("config"),
        &["check", "--config", config.main_path().to_str().unwrap()],
        &[],
    );
    assert!(!output.status.success(), "{output:?}");
    assert_printed(
        &stdout(&output),
        &[expected(
            "market.toml",
            "services.empty.purposes",
            "at least one purpose",
        )],
    );
}
