use std::path::Path;

use super::fixture::{BASE, TODAY, desired as parse_ok};
use super::*;
use crate::model::Severity;

fn parse_err(src: &str) -> String {
    match super::fixture::parse(src) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_lowers() {
    let d = parse_ok(&format!(
        "{BASE}\n[[images]]\nsource = \"busybox:1.33.0\"\n[[images]]\nsource = \"ghcr.io/fluxcd/kustomize-controller:v0.6.3\"\n"
    ));
    assert_eq!(d.images.len(), 2);
    assert_eq!(d.images[0].key(), "fluxcd/kustomize-controller:v0.6.3");
    assert_eq!(d.images[1].path, "library/busybox");
    assert_eq!(d.images[1].source_registry, "docker.io");
    assert_eq!(d.gate.fail_on, Severity::High);
    assert_eq!(d.gate.scanners, vec!["policy".to_string()]);
    assert_eq!(
        d.registry("docker.io").endpoint,
        Endpoint::Url("https://registry-1.docker.io".into())
    );
    assert_eq!(d.live.repository("library/busybox"), "live/library/busybox");
}

#[test]
fn unknown_key_points_at_it() {
    let e = parse_err(&format!(
        "{BASE}\n[[images]]\nsource = \"busybox:1\"\ntagg = \"x\"\n"
    ));
    assert!(e.contains("airlock.toml:16:1: unknown field `tagg`"), "{e}");
    assert!(e.contains("expected one of"), "{e}");
}

#[test]
fn every_unknown_key_and_every_value_error_is_reported_in_one_run() {
    let e = parse_err(&format!(
        "{BASE}\n[[images]]\nsource = \"busybox:1\"\ntagg = \"x\"\n\
         [[images]]\nsource = \"Not A Ref\"\nplatfroms = [\"linux/amd64\"]\n"
    ));
    assert!(e.contains("airlock.toml:16:1: unknown field `tagg`"), "{e}");
    assert!(
        e.contains("airlock.toml:19:1: unknown field `platfroms`"),
        "{e}"
    );
    assert!(
        e.contains("airlock.toml:18:10: invalid image reference"),
        "{e}"
    );
    assert!(e.contains("3 configuration errors found"), "{e}");
    // In file order.
    let at = |needle: &str| e.find(needle).unwrap();
    assert!(
        at("tagg") < at("Not A Ref") && at("Not A Ref") < at("platfroms"),
        "{e}"
    );
}

#[test]
fn bad_reference_points_at_it() {
    let e = parse_err(&format!(
        "{BASE}\n[[images]]\nsource = \"ghcr.io/Flux/x:1\"\n"
    ));
    assert!(e.contains("airlock.toml:15:10:"), "{e}");
    assert!(e.contains("lowercase"), "{e}");
    assert!(e.contains("help:"), "{e}");
}

#[test]
fn duplicate_live_tag() {
    let e = parse_err(&format!(
        "{BASE}\n[[images]]\nsource = \"busybox:1.33.0\"\n[[images]]\nsource = \"docker.io/library/busybox:1.33.0\"\n"
    ));
    assert!(
        e.contains("two images map to the same live tag `live/library/busybox:1.33.0`"),
        "{e}"
    );
    assert!(e.contains("line 14"), "{e}");
}

#[test]
fn semantic_errors_are_all_reported() {
    let e = parse_err(
        r#"
[quarantine]
registry = "nosuch"
[live]
registry = "example.io"
[gate]
fail_on = "severe"
max_verdict_age = "a week"
scanners = ["trivy"]
[[gate.allow]]
id = "CVE-1"
expires = "2020-01-01"
reason = "old"
[gate.policy]
max_size = "2 GB!"
platforms = ["linux"]
[[images]]
source = "busybox:1"
digest = "sha256:xyz"
"#,
    );
    for want in [
        "unknown registry alias `nosuch`",
        "invalid severity `severe`",
        "invalid max_verdict_age",
        "unknown scanner `trivy`",
        "expired on 2020-01-01",
        "invalid size",
        "invalid platform",
        "the pin is not a digest",
        "8 configuration errors found",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}

#[test]
fn missing_tables_and_basic_auth() {
    let e = parse_err("[registries.r]\nendpoint = \"https://r.example\"\nauth = \"basic\"\n");
    assert!(e.contains("basic auth without username"), "{e}");
    assert!(e.contains("missing [quarantine]"), "{e}");
    assert!(e.contains("missing [live]"), "{e}");
}

#[test]
fn allow_entries_and_policy_hash() {
    let with_allow = format!(
        "{BASE}\n[[gate.allow]]\nid = \"CVE-2021-42378\"\nimages = [\"busybox\"]\nexpires = 2027-01-31\nreason = \"r\"\n"
    );
    let d = parse_ok(&with_allow);
    assert_eq!(d.gate.allow[0].images, vec!["library/busybox".to_string()]);
    assert!(d.gate.allow[0].covers("CVE-2021-42378", "library/busybox"));
    assert!(!d.gate.allow[0].covers("CVE-2021-42378", "library/alpine"));
    let plain = parse_ok(BASE);
    assert_ne!(d.policy_hash(), plain.policy_hash());
    let stricter = parse_ok(&format!("{BASE}\n[gate]\nfail_on = \"medium\"\n"));
    assert_ne!(stricter.policy_hash(), plain.policy_hash());
    let age = parse_ok(&format!("{BASE}\n[gate]\nmax_verdict_age = \"1d\"\n"));
    assert_eq!(
        age.policy_hash(),
        plain.policy_hash(),
        "verdict age is not a gate decision"
    );
}

#[test]
fn source_host_matches_an_aliased_endpoint() {
    let d = parse_ok(&format!(
        "{BASE}\n[[images]]\nsource = \"acraks0001.azurecr.io/team/app:1\"\n"
    ));
    assert_eq!(d.images[0].source_registry, "acr");
}

#[test]
fn registry_deadlines_default_and_are_checked() {
    let img = "\n[[images]]\nsource = \"busybox:1\"\n";
    let d = parse_ok(&format!("{BASE}{img}"));
    assert_eq!(d.registry("acr").timeouts, Timeouts::default());
    assert_eq!(
        d.registry("docker.io").timeouts.timeout,
        Timeouts::DEFAULT_TIMEOUT
    );
    let with = |keys: &str| {
        BASE.replace(
            "auth = \"docker\"\n",
            &format!("auth = \"docker\"\n{keys}\n"),
        ) + img
    };
    let d = parse_ok(&with("timeout = \"2m\"\nstall_timeout = \"45s\""));
    let t = d.registry("acr").timeouts;
    assert_eq!(t.timeout, std::time::Duration::from_secs(120));
    assert_eq!(t.stall_timeout, std::time::Duration::from_secs(45));
    // A short overall deadline shortens the default stall.
    let d = parse_ok(&with("timeout = \"5s\""));
    assert_eq!(d.registry("acr").timeouts.stall_timeout.as_secs(), 5);
    let e = parse_err(&with("timeout = \"soon\""));
    assert!(e.contains("invalid timeout `soon`"), "{e}");
    assert!(e.contains("airlock.toml:5:"), "{e}");
    let e = parse_err(&with("timeout = \"5s\"\nstall_timeout = \"10s\""));
    assert!(
        e.contains("stall_timeout `10s` is longer than timeout (5s)"),
        "{e}"
    );
    let e = parse_err(&with("stall_timeout = \"0s\""));
    assert!(e.contains("invalid stall_timeout"), "{e}");
}

#[test]
fn layout_paths_are_relative_to_the_file() {
    let d = parse(
        "[registries.local]\nlayout = \"reg\"\n[quarantine]\nregistry = \"local\"\n[live]\nregistry = \"local\"\n",
        Path::new("/etc/airlock/airlock.toml"),
        TODAY,
    )
    .unwrap();
    assert_eq!(
        d.registry("local").endpoint,
        Endpoint::Layout("/etc/airlock/reg".into())
    );
}

#[cfg(feature = "azure")]
#[test]
fn azure_registry_keys_lower_and_are_checked() {
    let acr =
        |extra: &str| BASE.replace("auth = \"docker\"\n", &format!("auth = \"azure\"\n{extra}"));
    let d = parse_ok(&acr(
        "transfer = \"acr-import\"\nsubscription = \"sub-1\"\nresource_group = \"rg\"\n",
    ));
    let r = d.registry("acr");
    assert_eq!(r.transfer, Transfer::AcrImport);
    let arm = r.arm.as_ref().unwrap();
    assert_eq!(
        arm.name, "acraks0001",
        "defaults to the endpoint's first label"
    );
    assert_eq!(
        arm.id(),
        "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acraks0001"
    );

    let e = parse_err(&acr("transfer = \"acr-import\"\n"));
    assert!(e.contains("acr-import without subscription"), "{e}");
    let e = parse_err(&acr("subscription = \"sub-1\"\n"));
    assert!(
        e.contains("needs both subscription and resource_group"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{}\n[[images]]\nsource = \"busybox:1\"\nplatforms = [\"linux/amd64\"]\n",
        acr("transfer = \"acr-import\"\nsubscription = \"s\"\nresource_group = \"rg\"\n")
    ));
    assert!(e.contains("platforms cannot be selected"), "{e}");
}

#[test]
fn defender_scanner_takes_no_command_and_needs_a_subscription() {
    let gate = "\n[gate]\nscanners = [\"policy\", \"defender\"]\n[scanners.defender]\nformat = \"defender\"\n";
    let e = parse_err(&format!("{BASE}{gate}"));
    assert!(e.contains("has no subscription"), "{e}");
    let with_sub = BASE.replace(
        "auth = \"docker\"\n",
        "auth = \"docker\"\nsubscription = \"s\"\nresource_group = \"rg\"\n",
    );
    let d = parse_ok(&format!("{with_sub}{gate}"));
    assert!(d.scanners["defender"].command.is_empty());
    let e = parse_err(&format!("{with_sub}{gate}command = [\"x\"]\n"));
    assert!(e.contains("takes no command"), "{e}");
    let e = parse_err(&format!("{BASE}\n[scanners.trivy]\nformat = \"trivy\"\n"));
    assert!(e.contains("has an empty command"), "{e}");
}

/// The 1-based line of the first line of `src` containing `needle`.
fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {src}"))
        + 1
}

#[test]
fn an_empty_scanner_list_is_an_error_at_the_list() {
    let src = format!("{BASE}\n[gate]\nscanners = []\n");
    let e = parse_err(&src);
    let at = format!(
        "airlock.toml:{}:12: scanners is empty",
        line_of(&src, "scanners = []")
    );
    assert!(e.contains(&at), "{e}");
    assert!(e.contains("every image would pass"), "{e}");
    // Leaving the key out keeps the default, the built-in checks.
    assert_eq!(parse_ok(BASE).gate.scanners, vec!["policy".to_string()]);
}

#[test]
fn allow_entries_for_ids_that_can_never_apply_are_errors() {
    let allow = |id: &str| {
        format!("{BASE}\n[[gate.allow]]\nid = \"{id}\"\nexpires = 2027-01-31\nreason = \"r\"\n")
    };
    let src = allow("AIRLOCK-SCANNER-FAILED");
    let e = parse_err(&src);
    let at = format!("airlock.toml:{}:6:", line_of(&src, "id = "));
    assert!(e.contains(&at), "{e}");
    assert!(e.contains("can never be allowed"), "{e}");
    assert!(e.contains("fails closed"), "{e}");
    let e = parse_err(&allow("airlock-scanner-failed"));
    assert!(e.contains("can never be allowed"), "{e}");
    // A misspelt or unknown built-in id would never match.
    let e = parse_err(&allow("airlock-root-user"));
    assert!(e.contains("is not a finding airlock reports"), "{e}");
    assert!(e.contains("write `AIRLOCK-ROOT-USER`"), "{e}");
    let e = parse_err(&allow("AIRLOCK-ROOT"));
    assert!(e.contains("AIRLOCK-ROOT-USER, AIRLOCK-SIZE"), "{e}");
    // Built-in check findings can be allowed (an image that must run as root, say).
    for id in crate::model::finding_id::ALLOWABLE {
        let d = parse_ok(&allow(id));
        assert_eq!(d.gate.allow[0].id, id);
    }
    parse_ok(&allow("CVE-2021-42378"));
}

#[test]
fn bad_endpoints_are_errors_at_the_value() {
    for (endpoint, says) in [
        ("https://acr.example:99999", "invalid port `99999`"),
        ("https://acr example", "contains whitespace"),
        ("https://ci:hunter2@acr.example", "contains credentials"),
        ("https://acr.example?tenant=x", "has a query"),
        ("https://acr.example#x", "has a fragment"),
        ("https://acr.example/v2/", "has a path"),
        ("ftp://acr.example", "scheme `ftp`"),
        ("https://acr_1.example", "invalid host"),
    ] {
        let src = BASE.replace("https://acraks0001.azurecr.io", endpoint);
        let e = parse_err(&src);
        let at = format!(
            "airlock.toml:{}:12: invalid endpoint",
            line_of(&src, "endpoint =")
        );
        assert!(e.contains(&at), "{endpoint}: {e}");
        assert!(e.contains(says), "{endpoint}: {e}");
        assert!(
            !e.contains("hunter2"),
            "the password is masked, even in the quoted line: {e}"
        );
    }
    // A host written in place of an alias, and an image's source host, are checked too.
    let src = BASE.replace(
        "registry = \"acr\"\nprefix = \"live\"",
        "registry = \"acr.example:0\"\nprefix = \"live\"",
    );
    let e = parse_err(&src);
    let at = format!("airlock.toml:{}:12:", line_of(&src, "acr.example:0"));
    assert!(e.contains(&at) && e.contains("invalid port `0`"), "{e}");
    let src = format!("{BASE}\n[[images]]\nsource = \"reg.example:99999/team/app:1\"\n");
    let e = parse_err(&src);
    let at = format!("airlock.toml:{}:10:", line_of(&src, "reg.example:99999"));
    assert!(e.contains(&at) && e.contains("invalid port `99999`"), "{e}");
    // Good ones still lower: ports, IPv6, http written out.
    for ok in [
        "https://acr.example:5000",
        "http://127.0.0.1:5000/",
        "https://[::1]:5000",
    ] {
        parse_ok(&BASE.replace("https://acraks0001.azurecr.io", ok));
    }
}

/// 50 000 images, all valid, and then one duplicate at the very end: validation is linear
/// (no per-image scan of the file or of the registry table). Timing is measured by hand
/// (README), not asserted.
#[test]
fn a_large_configuration_lowers_and_names_a_late_duplicate() {
    const N: usize = 50_000;
    let mut src = String::from(BASE);
    for i in 0..N {
        src.push_str(&format!(
            "[[images]]\nsource = \"reg{}.example/team/app{i}:1.{i}\"\n",
            i % 1000
        ));
    }
    let d = parse_ok(&src);
    assert_eq!(d.images.len(), N);
    assert!(d.registries.contains_key("reg999.example"));
    src.push_str("[[images]]\nsource = \"reg7.example/team/app7:1.7\"\n");
    let e = parse_err(&src);
    let first = line_of(&src, "source = \"reg7.example/team/app7:1.7\"") - 1;
    assert!(
        e.contains(&format!("the [[images]] entry at line {first}")),
        "{e}"
    );
    let last = src.lines().count();
    assert!(e.contains(&format!("airlock.toml:{last}:10:")), "{e}");
}

/// The values a build without the `azure` feature rejects, each at its place.
#[test]
fn azure_keys_are_found_where_they_are_written() {
    let src = format!(
        "{}[registries.plain]\nendpoint = \"https://r.example\"\ntransfer = \"stream\"\n\
         [scanners.defender]\nformat = \"defender\"\n[scanners.trivy]\nformat = \"trivy\"\ncommand = [\"trivy\"]\n",
        BASE.replace(
            "auth = \"docker\"\n",
            "auth = \"azure\"\nsubscription = \"s\"\nresource_group = \"rg\"\ntransfer = \"acr-import\"\ncloud = \"china\"\n"
        )
    );
    let raw: super::schema::RawConfig = toml::from_str(&src).unwrap();
    let found: Vec<(String, String)> = super::lower::azure_keys(&raw)
        .into_iter()
        .map(|(span, what)| (src[span].to_string(), what))
        .collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        found,
        vec![
            s("\"azure\"", "registry `acr`: auth = \"azure\""),
            s("\"s\"", "registry `acr`: subscription"),
            s("\"rg\"", "registry `acr`: resource_group"),
            s(
                "\"acr-import\"",
                "registry `acr`: transfer = \"acr-import\""
            ),
            s("\"china\"", "registry `acr`: cloud"),
            s("\"defender\"", "scanner `defender`: format = \"defender\""),
        ]
    );
    let plain: super::schema::RawConfig = toml::from_str(BASE).unwrap();
    assert!(super::lower::azure_keys(&plain).is_empty());
}

/// Without the `azure` feature, Azure keys are configuration errors at file:line:col.
#[cfg(not(feature = "azure"))]
#[test]
fn azure_keys_are_errors_in_a_build_without_azure() {
    let e = parse_err(&BASE.replace("auth = \"docker\"", "auth = \"azure\""));
    assert!(e.contains("airlock.toml:4:8"), "{e}");
    assert!(e.contains("built without Azure support"), "{e}");
    let e = parse_err(&format!(
        "{BASE}[gate]\nscanners = [\"policy\", \"defender\"]\n[scanners.defender]\nformat = \"defender\"\n"
    ));
    assert!(
        e.contains("format = \"defender\" needs Azure support"),
        "{e}"
    );
}
