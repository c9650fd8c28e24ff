//! What `down` must not remove: a sub-domain's app, a resource that only names the stack
//! inside another label.

use crate::support::{DEPLOY_PATIENCE, output_in, output_within, stack, text};
use crate::swarm::{self, App, leftovers};

#[test]
fn tearing_down_a_b_leaves_a_b_c_alone() {
    if !swarm::available("tearing_down_a_b_leaves_a_b_c_alone") {
        return;
    }
    let mut app = App::new();
    let ab = app.domain("t4");
    let abc = format!("{ab}.sub");
    app.track(&abc);
    let (s_ab, s_abc) = (stack(&ab), stack(&abc));
    for (run, d) in [("4a", &ab), ("4b", &abc)] {
        let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m");
        let out = output_in(app.chain(run, d, &up), DEPLOY_PATIENCE);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let before_abc = leftovers(&s_abc);
    assert!(
        before_abc
            .iter()
            .any(|l| l == &format!("secret {s_abc}_db_password_v1")),
        "{before_abc:?}"
    );
    let out = output_within(app.chain("4c", &ab, &format!("\"$DEPLOY\" down {ab}")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Every name of a.b.c starts with a.b's stack name too, and all of it is still there.
    assert_eq!(leftovers(&s_abc), before_abc);
    assert!(
        leftovers(&s_ab).iter().all(|l| l.contains(&s_abc)),
        "{:?}",
        leftovers(&s_ab)
    );
}

#[test]
fn a_spoofed_namespace_label_claims_nothing() {
    if !swarm::available("a_spoofed_namespace_label_claims_nothing") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t9");
    let stack = stack(&d);
    // Not labelled with the stack: the namespace only appears inside another label's
    // value, which a `k=v,k=v` reading of `Labels` would take for the real thing.
    let victim = format!("{stack}x_victim");
    app.track(&format!("{d}x"));
    let spoof = format!("note=x,com.docker.stack.namespace={stack}");
    let made = std::process::Command::new("docker")
        .args(["volume", "create", "--label", &spoof, &victim])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let out = output_within(app.chain("9", &d, &format!("\"$DEPLOY\" down {d}")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("removed nothing"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        leftovers(&format!("{stack}x")),
        [format!("volume {victim}")]
    );
}
