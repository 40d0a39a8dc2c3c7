//! The scrubber on arbitrary text: never panics, never loops, copies only when it redacts.
#![no_main]

use std::{borrow::Cow, sync::OnceLock};

use client_telemetry::{
    scrub::{Kind, Redactions, Scrubber},
    settings::Settings,
};
use libfuzzer_sys::fuzz_target;

fn scrubber() -> &'static Scrubber {
    static SCRUBBER: OnceLock<Scrubber> = OnceLock::new();
    SCRUBBER.get_or_init(|| {
        let settings = Settings::from_vars(Vec::new()).expect("defaults are valid");
        Scrubber::new(&settings.scrub).expect("built-in patterns compile")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut redactions = Redactions::default();
    let scrubbed = scrubber().scrub_text(text, &mut redactions);
    match &scrubbed {
        Cow::Borrowed(same) => assert_eq!((*same, redactions.total()), (text, 0)),
        Cow::Owned(out) => {
            assert!(redactions.total() > 0);
            let markers: usize = Kind::ALL.iter().map(|k| out.matches(k.marker()).count()).sum();
            assert!(markers >= redactions.total() as usize, "{text:?} -> {out:?}");
        }
    }
});
