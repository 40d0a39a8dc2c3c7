//! The embedded default: nothing but the binary.
mod support;

use support::{Gateway, batch};

#[test]
fn starts_on_the_embedded_default_and_accepts_a_batch() {
    let gateway = Gateway::start(&[]);
    assert_eq!(gateway.post(&batch(3)).status, 204);
    assert_eq!(gateway.wait_for_events(3).len(), 3);
    assert_eq!(gateway.get(&gateway.url("/healthz")).status, 200);
}
