//! The lock dir and lockfile hardening, and domain validation: nothing is ever written
//! through a planted link, and nothing is created for a bad domain.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use predicates::prelude::*;

use super::D;
use crate::support::{Sandbox, exists, list, require_root};

#[test]
fn a_planted_symlink_is_refused_and_its_target_untouched() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.lock_dir()).unwrap();
    let victim = sb.path("victim");
    fs::write(&victim, "precious").unwrap();
    let before = fs::metadata(&victim).unwrap().modified().unwrap();
    symlink(&victim, sb.lockfile(D)).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "touch", "ran"])
        .current_dir(sb.tmp.path())
        .assert()
        .code(125)
        .stderr(predicate::str::contains("symbolic link"))
        .stderr(predicate::str::contains(
            sb.lockfile(D).display().to_string(),
        ));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(fs::metadata(&victim).unwrap().modified().unwrap(), before);
    assert!(!sb.path("ran").exists());

    // A dangling link must not create its target either.
    fs::remove_file(sb.lockfile(D)).unwrap();
    let target = sb.path("would-be-created");
    symlink(&target, sb.lockfile(D)).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .code(125);
    assert!(!exists(&target));
}

#[test]
fn a_planted_hard_link_is_refused_and_its_target_untouched() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.lock_dir()).unwrap();
    let victim = sb.path("victim");
    fs::write(&victim, "precious").unwrap();
    fs::hard_link(&victim, sb.lockfile(D)).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("hard links"));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn a_directory_where_the_lockfile_belongs_is_refused() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.lockfile(D)).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .code(125);
    assert!(sb.lockfile(D).is_dir());
}

#[test]
fn a_world_writable_lock_dir_without_sticky_bit_is_refused() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.lock_dir()).unwrap();
    fs::set_permissions(sb.lock_dir(), fs::Permissions::from_mode(0o777)).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("world-writable"))
        .stderr(predicate::str::contains("CCCI_APP_LOCK_DIR"))
        .stderr(predicate::str::contains(
            sb.lock_dir().display().to_string(),
        ));
    assert!(list(&sb.lock_dir()).is_empty());
    // With the sticky bit (as /tmp and /run/lock have) nobody can replace our files.
    fs::set_permissions(sb.lock_dir(), fs::Permissions::from_mode(0o1777)).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .success();
}

#[test]
fn a_lock_dir_or_lockfile_owned_by_someone_else_is_refused() {
    if !require_root("a_lock_dir_or_lockfile_owned_by_someone_else_is_refused") {
        return;
    }
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    let sb = Sandbox::new();
    fs::create_dir_all(sb.lock_dir()).unwrap();
    nix::unistd::chown(&sb.lock_dir(), nobody, None).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("owned by uid 65534"));
    assert!(list(&sb.lock_dir()).is_empty());

    nix::unistd::chown(&sb.lock_dir(), Some(nix::unistd::Uid::current()), None).unwrap();
    fs::write(sb.lockfile(D), "theirs").unwrap();
    nix::unistd::chown(&sb.lockfile(D), nobody, None).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("owned by uid 65534"));
    assert_eq!(fs::read_to_string(sb.lockfile(D)).unwrap(), "theirs");
}

#[test]
fn a_domain_too_long_for_its_lockfile_name_is_refused_naming_the_limit() {
    // 241 characters is a valid DNS name, but cc-ci-app-<domain>.lock would be 256 bytes:
    // refused up front, not with the OS's "File name too long" later. 240 locks.
    let sb = Sandbox::new();
    let name = |len: usize| {
        format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(len - 192)
        )
    };
    let (fits, too_long) = (name(240), name(241));
    assert_eq!((fits.len(), too_long.len()), (240, 241));
    sb.assert("ccci-lock")
        .args([too_long.as_str(), "--", "touch", "ran"])
        .current_dir(sb.tmp.path())
        .assert()
        .code(125)
        .stderr(predicate::str::contains("longer than 240 characters"))
        .stderr(predicate::str::contains("255-byte file name limit"))
        .stderr(predicate::str::contains("File name too long").not());
    assert!(!sb.path("ran").exists());
    sb.assert("ccci-lock")
        .args([fits.as_str(), "--", "touch", "ran"])
        .current_dir(sb.tmp.path())
        .assert()
        .success();
    assert!(sb.path("ran").exists());
}

#[test]
fn invalid_domains_are_refused_quoted_and_create_nothing() {
    let sb = Sandbox::new();
    let long = "a".repeat(254);
    let labelled = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62)
    );
    for bad in [
        "../x", "A.B", "", &long, &labelled, "a..b", "-a.b", "a/b", "a_b", "x.", ".x",
    ] {
        sb.assert("ccci-lock")
            .arg(bad)
            .args(["--", "touch", "ran"])
            .current_dir(sb.tmp.path())
            .assert()
            .code(125)
            .stderr(predicate::str::contains(format!("{bad:?}")));
        assert!(!exists(&sb.lock_dir()), "{bad:?}: the lock dir was created");
    }
    // Nor in an existing lock dir.
    fs::create_dir_all(sb.lock_dir()).unwrap();
    sb.assert("ccci-lock")
        .args(["../x", "--", "true"])
        .assert()
        .code(125);
    assert!(list(&sb.lock_dir()).is_empty());
    assert!(!sb.path("ran").exists());
}

#[test]
fn a_symlinked_lock_dir_or_runs_dir_is_refused_with_or_without_a_trailing_slash() {
    // Whoever owns the link could repoint it while runs hold locks in the old target.
    let sb = Sandbox::new();
    let real = sb.path("real");
    fs::create_dir_all(&real).unwrap();
    symlink(&real, sb.lock_dir()).unwrap();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("symbolic link"))
        .stderr(predicate::str::contains("CCCI_APP_LOCK_DIR"));
    // `link/` and `link/.` make the kernel follow the link: refused all the same, for the
    // lock dir and the runs dir (issue 12 point 7).
    let link = sb.lock_dir().display().to_string();
    symlink(&real, sb.runs_dir()).unwrap();
    let runs = sb.runs_dir().display().to_string();
    for suffix in ["/", "/."] {
        sb.assert("ccci-lock")
            .env("CCCI_APP_LOCK_DIR", format!("{link}{suffix}"))
            .args([D, "--", "true"])
            .assert()
            .code(125)
            .stderr(predicate::str::contains("symbolic link"));
        sb.assert("ccci-rundir")
            .env("CCCI_RUNS_DIR", format!("{runs}{suffix}"))
            .args(["--run-id", "r1", "--", "true"])
            .assert()
            .code(125)
            .stderr(predicate::str::contains("symbolic link"))
            .stderr(predicate::str::contains("CCCI_RUNS_DIR"));
    }
    assert!(list(&real).is_empty());
}

#[test]
fn a_planted_fifo_is_refused_and_never_hangs_a_probe() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.lock_dir()).unwrap();
    nix::unistd::mkfifo(
        &sb.lockfile(D),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let probe = |args: &[&str]| {
        let mut cmd = sb.cmd("ccci-lock");
        cmd.args(args);
        crate::support::output_within(cmd)
    };
    let out = probe(&["--status", D]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not a regular file"),
        "{out:?}"
    );
    assert_eq!(probe(&["--status"]).status.code(), Some(0));
    assert_eq!(probe(&[D, "--", "true"]).status.code(), Some(125));
}

#[test]
fn a_lock_dir_under_a_symlink_or_directory_someone_else_owns_is_refused() {
    // Whoever owns a parent can swap the directory under it: `pub/locks` a symlink that
    // `nobody` repoints while runs hold locks in the old target (adversary finding F5).
    if !require_root("a_lock_dir_under_a_symlink_or_directory_someone_else_owns_is_refused") {
        return;
    }
    let sb = Sandbox::new();
    let public = sb.path("pub");
    fs::create_dir_all(&public).unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o1777)).unwrap();
    let real = sb.path("real");
    fs::create_dir_all(&real).unwrap();
    symlink(&real, public.join("locks")).unwrap();
    std::os::unix::fs::lchown(public.join("locks"), Some(65534), Some(65534)).unwrap();
    sb.assert("ccci-lock")
        .env("CCCI_APP_LOCK_DIR", public.join("locks/cc-ci"))
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("symbolic link owned by uid 65534"));
    assert!(list(&real).is_empty());
    // A directory of theirs on the way is refused the same.
    let theirs = public.join("theirs");
    fs::create_dir_all(&theirs).unwrap();
    nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    sb.assert("ccci-lock")
        .env("CCCI_APP_LOCK_DIR", theirs.join("cc-ci"))
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("directory owned by uid 65534"));
    // Ours, under the sticky world-writable `pub`: fine.
    sb.assert("ccci-lock")
        .env("CCCI_APP_LOCK_DIR", public.join("ours"))
        .args([D, "--", "true"])
        .assert()
        .success();
}

#[test]
fn an_old_layer_lock_dir_that_is_the_lock_dir_itself_is_refused_not_waited_on() {
    // Both layers name a lockfile cc-ci-app-<domain>.lock: with CCCI_LEGACY_LOCK_DIR the
    // lock dir itself, a run would take its own lock, then wait for it — forever.
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.lock_dir()).unwrap();
    // Through another spelling of the same directory, too.
    let alias = sb.path("alias");
    std::os::unix::fs::symlink(sb.lock_dir(), &alias).unwrap();
    for legacy in [sb.lock_dir(), alias] {
        let mut cmd = sb.cmd("ccci-lock");
        cmd.env("CCCI_LEGACY_LOCK_DIR", &legacy)
            .args([D, "--", "touch"])
            .arg(sb.path("ran"));
        let out = crate::support::output_within(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert!(err.contains("is ccci's own lock dir"), "{err}");
        assert!(!sb.path("ran").exists());
    }
}
