//! The fuzz targets' properties (fuzz/properties.rs) on stable, in every CI run: every seed and every
//! input a fuzzing run kept or crashed on (fuzz/seeds, fuzz/corpus and fuzz/artifacts, when present),
//! then a bounded number of deterministic mutations of the seeds. `scripts/fuzz.sh` explores far
//! more with libFuzzer on nightly; this keeps what it found (and the seeds) as regression tests.

#[path = "../fuzz/properties.rs"]
mod properties;

use std::{fs, io::Write, path::Path};

const MUTATIONS_PER_SEED: usize = 10_000;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut found: Vec<Vec<u8>> = ["seeds", "corpus", "artifacts"]
        .iter()
        .filter_map(|dir| fs::read_dir(root.join(dir).join(target)).ok())
        .flatten()
        .filter_map(|entry| fs::read(entry.ok()?.path()).ok())
        .collect();
    found.sort();
    found
}

/// xorshift64: the same mutations on every run, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b",",
    b":",
    b"null",
    b"1e999999",
    b"-0",
    b"\"context\":",
    b"\"events\":",
    b"{\"a\":{\"a\":{\"a\":",
    b"\xff",
    b"\xc3",
    b"\0",
    b"@",
    b"4111 1111 1111 1111",
    b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
    b"DE89370400440532013000",
    b"password=",
    b"+1 415 555 0100",
    b"4.111111111111111e15",
    b"-4111111111111111.0",
    b"4111.1111.1111.1111",
    b"4111  1111  1111",
    b"\xc3\xbc@b\xc3\xbccher.de",
    b"%40",
    b"Authorization: Token ",
    b"bearer ",
    b"Cookie: a=b; ",
    b"\"password\":123456",
    b"1.2.3.4",
    b"0.1234",
];

/// One to four edits: flip a bit, insert a token, delete or duplicate a span, truncate.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(64)).min(data.len());
                let span = data[at..end].to_vec();
                data.splice(at..at, span.into_iter().cycle().take((end - at) * (1 + rng.below(8))));
            }
            _ => data.truncate(at),
        }
    }
    data
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn the_ingest_body_path_holds_its_properties_on_every_seed_and_mutation() {
    let seeds = inputs("ingest_body");
    assert!(seeds.len() >= 3, "the seeds are in fuzz/seeds/ingest_body");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for seed in &seeds {
        properties::ingest_body(seed);
        for i in 0..MUTATIONS_PER_SEED {
            let mutated = mutate(seed, &mut rng);
            // Every tenth mutation goes through gunzip as a valid stream of the mutated JSON.
            let input = if i % 10 == 0 { gzip(&mutated) } else { mutated };
            properties::ingest_body(&input);
        }
    }
}

#[test]
fn the_scrubber_holds_its_properties_on_every_seed_and_mutation() {
    let seeds = inputs("scrub_text");
    assert!(seeds.len() >= 4, "the seeds are in fuzz/seeds/scrub_text");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for seed in &seeds {
        properties::scrub_text(seed);
        for _ in 0..MUTATIONS_PER_SEED {
            properties::scrub_text(&mutate(seed, &mut rng));
        }
    }
}
