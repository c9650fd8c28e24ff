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

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use yaml_rust2::{Yaml, YamlLoader};

use crate::procs::Tag;
use crate::support::{Background, bin, output_within, scrub, stack, text};
use crate::swarm::{self, App, abra, leftovers};

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

#[test]
fn d_green_is_0_and_red_is_the_harness_status_under_sh_e() {
    if !swarm::available("d_green_is_0_and_red_is_the_harness_status_under_sh_e") {
        return;
    }
    let mut app = App::new();
    let chain = recipe_ci_script();
    for (build, mode, want) in [("d1", "green", 0), ("d2", "red", 3)] {
        let b_d = app.build();
        let d = b_d.domain.clone();
        let mut step = app.step(build, &b_d, mode, &chain);
        let (status, lines) = run(&mut step);
        assert_eq!(status.code(), Some(want), "{mode}: {lines:?}");
        let marks = step.marks();
        assert!(
            marks.contains("start pid") && marks.contains("args runner/run_recipe_ci.py"),
            "{marks}"
        );
        assert!(
            marks.contains("deployed 1\n") && marks.contains(&format!("down {d} 0\n")),
            "{marks}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("== deploy: {d} converged in "))),
            "{lines:?}"
        );
        assert_eq!(leftovers(&stack(&d)), Vec::<String>::new(), "{mode}");
        step.wait_until_nothing_alive(Duration::ZERO);
        assert!(lock_is_free(&app, &d));
        // The guard's report is where .drone.yml puts it.
        let report = app.sb.path(&format!("ws-{build}/ccci-guard-report.json"));
        let report: serde_json::Value =
            serde_json::from_slice(&fs::read(&report).expect("guard report")).unwrap();
        assert_eq!(report["outcome"], "exited", "{report}");
    }
}

#[test]
fn b_two_domains_at_once_are_both_green_and_neither_waits() {
    if !swarm::available("b_two_domains_at_once_are_both_green_and_neither_waits") {
        return;
    }
    let mut app = App::new();
    let chain = recipe_ci_script();
    let (b1, b2) = (app.build(), app.build());
    let (d1, d2) = (b1.domain.clone(), b2.domain.clone());
    let gates: std::collections::HashMap<&str, _> = [
        ("gate-b1", app.sb.fifo("gate-b1")),
        ("gate-b2", app.sb.fifo("gate-b2")),
    ]
    .into();
    let mut s1 = app.step("b1", &b1, "gate", &chain);
    let mut s2 = app.step("b2", &b2, "gate", &chain);
    let (mut r1, mut r2) = (spawn(&mut s1), spawn(&mut s2));
    // Both deployed at the same time: each waits at its gate until both are up.
    r1.wait_for_any_within(DEPLOY_PATIENCE, &["stand-in): deployed"]);
    r2.wait_for_any_within(DEPLOY_PATIENCE, &["stand-in): deployed"]);
    for d in [&d1, &d2] {
        assert!(!leftovers(&stack(d)).is_empty(), "{d} is not deployed");
    }
    gates["gate-b1"].release();
    gates["gate-b2"].release();
    for (r, d) in [(r1, &d1), (r2, &d2)] {
        let (status, lines) = r.finish_within(DEPLOY_PATIENCE);
        assert_eq!(status.code(), Some(0), "{d}: {lines:?}");
        assert!(
            !lines.iter().any(|l| l.contains("— waiting ==")),
            "{d} waited: {lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("== app lock: acquired {d} =="))),
            "{lines:?}"
        );
        assert_eq!(leftovers(&stack(d)), Vec::<String>::new());
    }
    s1.wait_until_nothing_alive(Duration::ZERO);
    s2.wait_until_nothing_alive(Duration::ZERO);
}

#[test]
fn c_the_same_domain_twice_serializes_visibly_and_both_are_green() {
    if !swarm::available("c_the_same_domain_twice_serializes_visibly_and_both_are_green") {
        return;
    }
    let mut app = App::new();
    let chain = recipe_ci_script();
    let b_d = app.build();
    let d = b_d.domain.clone();
    let gates: std::collections::HashMap<&str, _> = [("gate-c1", app.sb.fifo("gate-c1"))].into();
    let mut first = app.step("c1", &b_d, "gate", &chain);
    let mut second = app.step("c2", &b_d, "green", &chain);
    let mut r1 = spawn(&mut first);
    r1.wait_for_any_within(DEPLOY_PATIENCE, &["stand-in): deployed"]);
    // The first run holds the domain, deployed: the second must wait, and say so.
    let mut r2 = spawn(&mut second);
    let waiting = r2.wait_for("— waiting ==");
    assert!(
        waiting.contains(&format!("another run of {d} in flight")) && waiting.contains("run c1"),
        "{waiting}"
    );
    assert_eq!(
        second.marks(),
        "",
        "the second harness started while the first held {d}"
    );
    gates["gate-c1"].release();
    let (status, lines1) = r1.finish_within(DEPLOY_PATIENCE);
    assert_eq!(status.code(), Some(0), "{lines1:?}");
    let (status, lines2) = r2.finish_within(DEPLOY_PATIENCE);
    assert_eq!(status.code(), Some(0), "{lines2:?}");
    let waited = |lines: &[String]| lines.iter().any(|l| l.contains("— waiting =="));
    assert!(!waited(&lines1) && waited(&lines2));
    let acquired_after = format!("== app lock: acquired {d} after ");
    assert!(
        lines2.iter().any(|l| l.contains(&acquired_after)),
        "{lines2:?}"
    );
    // Each run counted exactly one deploy: the harness's `count --expect 1` passed.
    for (step, lines) in [(&first, &lines1), (&second, &lines2)] {
        assert!(step.marks().contains("deployed 1\n"), "{lines:?}");
    }
    // ... and the second deployed only after the first had torn down.
    assert!(first.marks().contains(&format!("down {d} 0\n")));
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
}

#[test]
fn a_sigkill_of_the_step_shell_tears_down_and_leaves_nothing() {
    if !swarm::available("a_sigkill_of_the_step_shell_tears_down_and_leaves_nothing") {
        return;
    }
    let mut app = App::new();
    let b_d = app.build();
    let d = b_d.domain.clone();
    let dep = b_d.dep.clone();
    let mut step = app.step("a1", &b_d, "wait", &recipe_ci_script());
    step.cmd.env("CHAIN_DEPENDENCY", DEPENDENCY);
    let mut run = spawn(&mut step);
    step.wait_for_mark("waiting");
    assert!(!leftovers(&stack(&d)).is_empty(), "not deployed");
    assert!(
        !leftovers(&stack(&dep)).is_empty(),
        "the dependency is not deployed"
    );
    // What a Drone cancel does: SIGKILL the step's /bin/sh, nothing else. (Not
    // `run.finish()`: dropping a Background SIGKILLs its whole process group, the guard
    // included — that would be scenario f, not a cancel. `run` lives to the end.)
    kill(Pid::from_raw(run.pid() as i32), Signal::SIGKILL).unwrap();
    let status = run.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    step.wait_until_nothing_alive(DEPLOY_PATIENCE);
    let marks = step.marks();
    assert!(
        marks.contains("term\n")
            && marks.contains(&format!("down {d} 0\n"))
            && marks.contains(&format!("down {dep} 0\n")),
        "{marks}"
    );
    for d in [&d, &dep] {
        assert_eq!(leftovers(&stack(d)), Vec::<String>::new());
        assert!(lock_is_free(&app, d), "the lock of {d} is still held");
    }
    let marks = step.marks();
    assert_eq!(marks.matches("term\n").count(), 1, "{marks}");
    drop(run);
}

#[test]
fn e_the_deadline_while_deployed_is_124_after_the_teardown() {
    if !swarm::available("e_the_deadline_while_deployed_is_124_after_the_teardown") {
        return;
    }
    let mut app = App::new();
    let b_d = app.build();
    let d = b_d.domain.clone();
    // The only edit to .drone.yml's commands: the 50m deadline becomes 30s (long enough
    // to deploy on a loaded machine; the marks prove the deploy came first).
    let chain = recipe_ci_script();
    assert!(chain.contains("--deadline 50m "), "{chain}");
    let chain = chain.replace("--deadline 50m ", "--deadline 30s ");
    let mut step = app.step("e1", &b_d, "wait", &chain);
    let (status, lines) = run(&mut step);
    assert_eq!(status.code(), Some(124), "{lines:?}");
    let marks = step.marks();
    let order: Vec<&str> = marks
        .lines()
        .filter(|l| {
            [
                "deployed 1".to_owned(),
                "term".to_owned(),
                format!("down {d} 0"),
            ]
            .contains(&l.to_string())
        })
        .collect();
    assert_eq!(
        order,
        [
            "deployed 1".to_owned(),
            "term".to_owned(),
            format!("down {d} 0")
        ],
        "{marks}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("== guard: deadline 30s reached")),
        "{lines:?}"
    );
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
    step.wait_until_nothing_alive(Duration::ZERO);
    assert!(lock_is_free(&app, &d));
    let report = app.sb.path("ws-e1/ccci-guard-report.json");
    let report: serde_json::Value = serde_json::from_slice(&fs::read(report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "deadline", "{report}");
}

#[test]
fn f_a_chain_killed_whole_is_orphaned_and_one_janitor_pass_reaps_it() {
    if !swarm::available("f_a_chain_killed_whole_is_orphaned_and_one_janitor_pass_reaps_it") {
        return;
    }
    let mut app = App::new();
    let b_d = app.build();
    let d = b_d.domain.clone();
    let dep = b_d.dep.clone();
    let mut step = app.step("f1", &b_d, "wait", &recipe_ci_script());
    step.cmd.env("CHAIN_DEPENDENCY", DEPENDENCY);
    let run = spawn(&mut step);
    step.wait_for_mark("waiting");
    // Every process of the chain at once, as a host crash or the OOM killer would: stop
    // them all first, so no death (the guard's parent-death signals) can start a teardown
    // before the rest are killed.
    let chain = step.alive();
    assert!(chain.len() >= 3, "{chain:?}");
    for (pid, _) in &chain {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
    }
    for (pid, _) in &chain {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    step.wait_until_nothing_alive(crate::support::PATIENCE);
    drop(run);
    assert!(!step.marks().contains("term"), "{}", step.marks());
    for d in [&d, &dep] {
        assert!(!leftovers(&stack(d)).is_empty(), "{d} was not orphaned");
        assert!(app.sb.lockfile(d).exists());
    }
    // One janitor pass, allowed to touch this test's domains only: the run's app and its
    // dependency, both orphans now that nothing of the run lives.
    let out = output_within(janitor_for(&app, &[&d, &dep]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    for d in [&d, &dep] {
        assert!(err.contains(&format!("ccci-janitor: reaped {d}")), "{err}");
        assert_eq!(leftovers(&stack(d)), Vec::<String>::new(), "{err}");
        assert!(
            !app.sb.lockfile(d).exists(),
            "the lockfile outlived the reap"
        );
        assert!(
            !app.sb
                .abra_dir()
                .join(format!("servers/default/{d}.env"))
                .exists()
        );
    }
}

/// One janitor pass that may touch `domains` and nothing else on the shared swarm.
fn janitor_for(app: &App, domains: &[&str]) -> Command {
    let names: Vec<String> = domains.iter().map(|d| d.replace('.', r"\.")).collect();
    let mut janitor = app.sb.cmd("ccci-janitor");
    janitor.env("CCCI_RUN_APP_RE", format!("^({})$", names.join("|")));
    janitor
}

#[test]
fn g_a_run_holds_its_dependency_for_its_whole_life_counts_two_and_keeps_its_results() {
    if !swarm::available(
        "g_a_run_holds_its_dependency_for_its_whole_life_counts_two_and_keeps_its_results",
    ) {
        return;
    }
    let mut app = App::new();
    let b = app.build();
    let (d, dep) = (b.domain.clone(), b.dep.clone());
    let _gate = app.sb.fifo("gate-g1");
    let mut step = app.step("g1", &b, "gate", &recipe_ci_script());
    step.cmd.env("CHAIN_DEPENDENCY", DEPENDENCY);
    let mut run = spawn(&mut step);
    run.wait_for_any_within(DEPLOY_PATIENCE, &["stand-in): deployed 2"]);
    // Deployed, both held: a janitor pass now reaps neither, and says both are live.
    for d in [&d, &dep] {
        assert!(!leftovers(&stack(d)).is_empty(), "{d} is not deployed");
        assert!(!lock_is_free(&app, d), "{d} is not held");
    }
    let out = output_within(janitor_for(&app, &[&d, &dep]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("ccci-janitor: reaped"), "{err}");
    for d in [&d, &dep] {
        assert!(
            !leftovers(&stack(d)).is_empty(),
            "the janitor touched {d}: {err}"
        );
    }
    _gate.release();
    let (status, lines) = run.finish_within(DEPLOY_PATIENCE);
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let marks = step.marks();
    for needed in [
        format!("params {RECIPE} {} {} domain {d}", b.pr, b.git_ref),
        format!("holds {dep}"),
        "deployed 2".to_owned(),
        format!("down {d} 0"),
        format!("down {dep} 0"),
    ] {
        assert!(marks.lines().any(|l| l == needed), "{needed}: {marks}");
    }
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "== app lock: acquired {dep} for the rest of this run"
        ))),
        "{lines:?}"
    );
    step.wait_until_nothing_alive(Duration::ZERO);
    for d in [&d, &dep] {
        assert_eq!(leftovers(&stack(d)), Vec::<String>::new());
        assert!(lock_is_free(&app, d), "{d} is still held");
    }
    // What the harness wrote into its run dir is there for the dashboard.
    let results = app.sb.runs_dir().join("g1/results.json");
    let results: serde_json::Value =
        serde_json::from_slice(&fs::read(&results).expect("results.json")).unwrap();
    assert_eq!(results["domain"], d.as_str(), "{results}");
}

#[test]
fn h_without_a_build_parameter_the_step_stops_before_anything_runs() {
    let mut app = App::new();
    let b = app.build();
    let mut step = app.step("h1", &b, "green", &recipe_ci_script());
    step.cmd.env_remove("PR");
    let (status, lines) = run(&mut step);
    assert_eq!(status.code(), Some(125), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ccci-rundir: PR is not set")),
        "{lines:?}"
    );
    assert_eq!(step.marks(), "", "the harness ran");
    assert_eq!(
        crate::support::list(&app.sb.lock_dir()),
        Vec::<String>::new()
    );
}
