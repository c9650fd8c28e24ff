//! Which abra tree is read: `status` reads the tree the other tools read, and outside a
//! run dir abra is told the tree ccci-deploy reads.

use crate::support::{DEPLOY_PATIENCE, output_in, output_within, text};
use crate::swarm::{self, App};

#[test]
fn status_reads_the_tree_the_other_tools_read() {
    if !swarm::available("status_reads_the_tree_the_other_tools_read") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("te");
    // The app's .env in the canonical tree (CCCI_CANONICAL_ABRA_DIR), and a HOME whose
    // own .abra knows nothing of it.
    let env = app.sb.abra_servers().join(format!("default/{d}.env"));
    std::fs::write(&env, "TYPE=two-services\n").unwrap();
    let home = app.sb.path("home");
    std::fs::create_dir_all(home.join(".abra/servers/default")).unwrap();
    let env_files = |out: &std::process::Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["env_files"].clone()
    };
    // Outside a run dir: the canonical tree, as the janitor reads it.
    let mut status = app.sb.cmd("ccci-deploy");
    status
        .env_remove("ABRA_DIR")
        .env("HOME", &home)
        .args(["status", &d, "--json"]);
    let out = output_within(status);
    assert_eq!(
        env_files(&out),
        serde_json::json!([env.display().to_string()])
    );
    let mut status = app.sb.cmd("ccci-deploy");
    status
        .env_remove("ABRA_DIR")
        .env("HOME", &home)
        .args(["status", &d]);
    let out = output_within(status);
    assert!(
        text(&out.stdout).contains(&format!("  env file {}", env.display())),
        "{}",
        text(&out.stdout)
    );
    // Inside one: the run's tree (whose servers/ links to the canonical one).
    let mut status = app.sb.cmd("ccci-rundir");
    status
        .env("HOME", &home)
        .args(["--run-id", "e", "--"])
        .arg(crate::support::bin("ccci-deploy"))
        .args(["status", &d, "--json"]);
    let out = output_within(status);
    let in_run = app
        .sb
        .runs_dir()
        .join(format!("e/abra/servers/default/{d}.env"));
    assert_eq!(
        env_files(&out),
        serde_json::json!([in_run.display().to_string()])
    );
}

#[test]
fn outside_a_run_dir_abra_is_told_the_tree_ccci_deploy_reads() {
    if !swarm::available("outside_a_run_dir_abra_is_told_the_tree_ccci_deploy_reads") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("tf");
    // A harness that counts deploys itself, with no ABRA_DIR: ccci-deploy reads the
    // canonical tree, and abra, left alone, would use $HOME/.abra (which has no server).
    let home = app.sb.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = app.sb.cmd("ccci-lock");
    cmd.env_remove("ABRA_DIR")
        .env("HOME", &home)
        .env("CCCI_ABRA", swarm::abra())
        .env("CCCI_DEPLOY_COUNT_FILE", app.sb.path("deploys"))
        .args([&d, "--"])
        .arg(crate::support::bin("ccci-deploy"))
        .args(["up", &d, "--recipe", "two-services", "--timeout", "2m"]);
    let out = output_in(cmd, DEPLOY_PATIENCE);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let canonical = app.sb.abra_dir();
    assert!(app.env_file(&d).is_file());
    assert!(canonical.join("recipes/two-services/compose.yml").is_file());
    assert!(!home.join(".abra").exists());
}
