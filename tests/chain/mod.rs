//! The Drone chain end to end (issue 7, ../shared/spec/nix.md ".drone.yml"): the
//! recipe-ci step's command is read from `.drone.yml` itself and run for real under
//! `/bin/sh -e -c`, as Drone's exec runner runs a step, against the real swarm. `PATH`
//! starts with a directory of links named like the installed tools (to the binaries under
//! test) and `cc-ci-run`, the stand-in harness in tests/fixtures/ — Python, as cc-ci's: it
//! takes the build parameters, reads the domain the step derived from `CCCI_DOMAIN`, runs
//! every tool through `subprocess` defaults (no lock descriptor reaches them), maybe
//! deploys a cold dependency under `ccci-lock --for-run`, deploys with `ccci-deploy up`,
//! checks `ccci-deploy count --expect <1 + dependencies>`, writes `results.json` into its
//! run dir, and ends green, red, at a gate, or when terminated — tearing down what it
//! deployed in every case, as the real one does.
//!
//! Every process of a chain carries `CHAIN_TEST_TAG=<sandbox>` in its environment, so
//! `/proc/*/environ` names exactly the chain's processes (as in tests/guard).

mod concurrency;
mod dependency;
mod drone_yml;
mod killed;
mod status;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use yaml_rust2::{Yaml, YamlLoader};

use crate::procs::Tag;
use crate::support::{Background, bin, output_within, scrub};
use crate::swarm::{self, App, abra};

const TAG: &str = "CHAIN_TEST_TAG";

/// A chain deploys and tears down a real app: far more than the suite's PATIENCE on a
/// loaded machine, still a bound that turns a hang into a failure.
const DEPLOY_PATIENCE: Duration = Duration::from_secs(180);

/// The suffix and run-app pattern of the test's domains (never cc-ci's real ones).
const SUFFIX: &str = "ci.example.org";

const RUN_APP_RE: &str = r"^[a-z0-9]{1,4}-[0-9a-f]{6}\.ci\.example\.org$";

/// The recipe a build tests, and the cold dependency some builds deploy beside it.
const RECIPE: &str = "two-services";

const DEPENDENCY: &str = "keydep";

/// One build's parameters, as the bridge passes them, and the domains they give.
#[derive(Clone)]
struct Build {
    pr: String,
    git_ref: String,
    /// The run's app domain, as `ccci-rundir domain` derives it.
    domain: String,
    /// Its dependency's, as the harness derives it.
    dep: String,
}

impl App {
    /// A build of a PR of its own: domains nobody else's test uses, cleaned up with us.
    fn build(&mut self) -> Build {
        let pr = u32::from_str_radix(&swarm::domain("x")[2..8], 16)
            .unwrap()
            .to_string();
        let git_ref = "049438e1cb47".to_owned();
        let derive = |recipe| {
            let params = ccci_core::run::appdomain::BuildParams {
                recipe,
                pr: &pr,
                git_ref: &git_ref,
            };
            ccci_core::run::appdomain::derive(&params, SUFFIX)
                .unwrap()
                .to_string()
        };
        let (domain, dep) = (derive(RECIPE), derive(DEPENDENCY));
        self.track(&domain);
        self.track(&dep);
        Build {
            pr,
            git_ref,
            domain,
            dep,
        }
    }
}

/// Every `commands:` line of `.drone.yml`'s pipeline `pipeline`, step by step.
fn drone_commands(pipeline: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".drone.yml");
    let docs = YamlLoader::load_from_str(&fs::read_to_string(&path).expect(".drone.yml"))
        .expect(".drone.yml is not valid YAML");
    let doc = docs
        .iter()
        .find(|d| d["name"].as_str() == Some(pipeline))
        .unwrap_or_else(|| panic!("no pipeline {pipeline:?} in .drone.yml"));
    let steps = doc["steps"].as_vec().expect("steps");
    steps
        .iter()
        .flat_map(|s| s["commands"].as_vec().cloned().unwrap_or_default())
        .map(|c| match c {
            Yaml::String(s) => s,
            other => panic!("a command that is not a string: {other:?}"),
        })
        .collect()
}

/// The recipe-ci step's chain, exactly as `.drone.yml` has it.
fn recipe_ci_chain() -> String {
    let commands = drone_commands("recipe-ci");
    let chain: Vec<&String> = commands
        .iter()
        .filter(|c| c.starts_with("ccci-guard"))
        .collect();
    assert_eq!(
        chain.len(),
        1,
        "one ccci-guard command expected: {commands:?}"
    );
    chain[0].clone()
}

/// The whole recipe-ci step as Drone's exec runner runs it: every command in turn, in one
/// shell (`/bin/sh -e`), so that a variable set by one is seen by the next.
fn recipe_ci_script() -> String {
    drone_commands("recipe-ci").join("\n")
}

/// One run of the recipe-ci step: its own build number, domain and harness mode.
struct Step {
    tag: Tag,
    marks: PathBuf,
    cmd: Command,
}

impl App {
    /// `/bin/sh -e -c <script>` as Drone's exec runner runs the step, with the tools and
    /// the stand-in harness first on PATH, tagged. `script` is the chain (maybe edited).
    fn step(&self, build: &str, params: &Build, mode: &str, script: &str) -> Step {
        let tools = self.sb.path("bin");
        if !tools.exists() {
            fs::create_dir_all(&tools).unwrap();
            for tool in [
                "ccci-guard",
                "ccci-rundir",
                "ccci-lock",
                "ccci-deploy",
                "ccci-janitor",
            ] {
                std::os::unix::fs::symlink(bin(tool), tools.join(tool)).unwrap();
            }
            std::os::unix::fs::symlink(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cc-ci-run"),
                tools.join("cc-ci-run"),
            )
            .unwrap();
        }
        let workspace = self.sb.path(&format!("ws-{build}"));
        fs::create_dir_all(&workspace).unwrap();
        let tag = Tag::new(TAG, format!("{}/{build}", self.sb.tmp.path().display()));
        let marks = workspace.join("marks");
        let path = format!(
            "{}:{}",
            tools.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("/bin/sh");
        scrub(&mut cmd);
        cmd.args(["-e", "-c", script])
            .current_dir(&workspace)
            .env("PATH", path)
            .env("CCCI_APP_LOCK_DIR", self.sb.lock_dir())
            .env("CCCI_RUNS_DIR", self.sb.runs_dir())
            .env("CCCI_CANONICAL_ABRA_DIR", self.sb.abra_dir())
            .env("CCCI_ABRA", abra())
            .env("DRONE_BUILD_NUMBER", build)
            .env("DRONE_WORKSPACE", &workspace)
            .env("RECIPE", RECIPE)
            .env("PR", &params.pr)
            .env("REF", &params.git_ref)
            .env("CCCI_DOMAIN_SUFFIX", SUFFIX)
            .env("CCCI_RUN_APP_RE", RUN_APP_RE)
            .env("CHAIN_HARNESS_MODE", mode)
            .env("CHAIN_MARKS", &marks)
            .env("CHAIN_GATE", self.sb.path(&format!("gate-{build}")));
        tag.apply(&mut cmd);
        Step { tag, marks, cmd }
    }
}

impl Step {
    fn marks(&self) -> String {
        fs::read_to_string(&self.marks).unwrap_or_default()
    }

    /// The chain's processes alive now (zombies count as gone).
    fn alive(&self) -> Vec<(i32, String)> {
        self.tag.alive()
    }

    fn wait_until_nothing_alive(&self, limit: Duration) {
        self.tag.wait_until_none_alive(limit);
    }

    fn wait_for_mark(&self, needle: &str) -> String {
        let end = Instant::now() + DEPLOY_PATIENCE;
        loop {
            let marks = self.marks();
            if marks.lines().any(|l| l.starts_with(needle)) {
                return marks;
            }
            assert!(
                Instant::now() < end,
                "no mark {needle:?} within {DEPLOY_PATIENCE:?}; marks: {marks:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.tag.kill_all();
    }
}

/// Run a step to completion: its status and its stderr.
fn run(step: &mut Step) -> (std::process::ExitStatus, Vec<String>) {
    let cmd = std::mem::replace(&mut step.cmd, Command::new("true"));
    Background::spawn(cmd).finish_within(DEPLOY_PATIENCE)
}

fn spawn(step: &mut Step) -> Background {
    let cmd = std::mem::replace(&mut step.cmd, Command::new("true"));
    Background::spawn(cmd)
}

fn lock_is_free(app: &App, domain: &str) -> bool {
    let mut probe = app.sb.cmd("ccci-lock");
    probe.args(["-n", domain, "--", "true"]);
    output_within(probe).status.success()
}
