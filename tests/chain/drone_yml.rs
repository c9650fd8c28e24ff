//! `.drone.yml` itself: both pipelines, and the recipe-ci step's chain as specified.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use yaml_rust2::YamlLoader;

use super::{drone_commands, recipe_ci_chain};

#[test]
fn drone_yml_has_both_pipelines_and_the_chain_as_specified() {
    let chain = recipe_ci_chain();
    assert_eq!(
        chain,
        "ccci-guard --deadline 50m --grace 5m --report \"$DRONE_WORKSPACE/ccci-guard-report.json\" \
         -- ccci-rundir -- ccci-lock \"$CCCI_DOMAIN\" -- cc-ci-run runner/run_recipe_ci.py"
    );
    // The domain comes from the build parameters, before the chain, in a way that stops
    // the step under `sh -e` when it fails.
    let commands = drone_commands("recipe-ci");
    let at = |c: &str| commands.iter().position(|x| x == c);
    let (derive, export, run) = (
        at("CCCI_DOMAIN=$(ccci-rundir domain)").expect("the domain is derived"),
        at("export CCCI_DOMAIN").expect("the domain is exported"),
        at(&chain).unwrap(),
    );
    assert!(derive < export && export < run, "{commands:?}");
    assert!(
        !commands.iter().any(|c| c.contains("export CCCI_DOMAIN=")),
        "{commands:?}"
    );
    // The guard's deadline and grace end before Drone's 60-minute timeout.
    let flag = |name: &str| {
        let value = chain.split(&format!("--{name} ")).nth(1).unwrap();
        ccci_core::duration::parse(value.split(' ').next().unwrap()).unwrap()
    };
    assert!(
        flag("deadline") + flag("grace") < Duration::from_secs(60 * 60),
        "{chain}"
    );
    // The README shows the step as it is here.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    for command in &commands {
        assert!(
            readme.contains(&format!("      - {command}\n"))
                || readme.contains(&format!("      - '{command}'\n")),
            "README's \"Running it in Drone\" differs from .drone.yml: {command}"
        );
    }
    let all = drone_commands("recipe-ci").join("\n");
    for banned in ["setsid", "trap"] {
        assert!(!all.contains(banned), "recipe-ci uses {banned}: {all}");
    }
    let raw =
        fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".drone.yml")).unwrap();
    let docs = YamlLoader::load_from_str(&raw).unwrap();
    for doc in &docs {
        assert!(
            doc["concurrency"].is_badvalue(),
            "a concurrency limit in pipeline {:?}",
            doc["name"]
        );
    }
    let recipe = docs
        .iter()
        .find(|d| d["name"].as_str() == Some("recipe-ci"))
        .unwrap();
    assert_eq!(recipe["type"].as_str(), Some("exec"));
    // drone-runner-exec passes a step only PATH and USER from the host: the step must
    // name the directories every tool and the janitor unit share (the module defaults).
    let env = &recipe["steps"][0]["environment"];
    for (var, default) in [
        ("HOME", "/root"),
        ("CCCI_APP_LOCK_DIR", ccci_core::env::defaults::APP_LOCK_DIR),
        ("CCCI_RUNS_DIR", ccci_core::env::defaults::RUNS_DIR),
        ("CCCI_CANONICAL_ABRA_DIR", "/root/.abra"),
    ] {
        assert_eq!(env[var].as_str(), Some(default), "recipe-ci step's {var}");
    }
    let ci = drone_commands("ccci").join("\n");
    for needed in [
        "cargo fmt",
        "cargo clippy",
        "-D warnings",
        "bash tests/run.sh",
        "nix-instantiate --parse",
    ] {
        assert!(ci.contains(needed), "ccci pipeline lacks {needed:?}: {ci}");
    }
}
