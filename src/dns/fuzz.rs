//! A small seeded mutation fuzzer for the reply decoder, run under `cargo test`: random bytes
//! and mutations of real replies must never make the decoder (or what consumes its output)
//! panic, loop, or allocate without bound. Deterministic (fixed seed) so a failure reproduces;
//! `DNS_FUZZ_SECS` and `DNS_FUZZ_SEED` run it longer or elsewhere.

use std::time::{Duration, Instant};

use super::answer::{extract_ipv4, extract_srv};
use super::lookup::check;
use super::wire::tests::{Builder, srv_rdata};
use super::wire::{self, TYPE_A, TYPE_SRV};

/// A real reply from dnsmasq 2.90 to our SRV query for
/// `hello-stateful-service.default.svc.cluster.local`: two SRV records with uncompressed
/// targets, their A records in the additional section (owners compressed into the SRV RDATA),
/// and the OPT record.
const DNSMASQ_REPLY: &str = "1234858000010002000000031668656c6c6f2d737461746566756c2d73657276\
    6963650764656661756c740373766307636c7573746572056c6f63616c0000210001c00c0021000100000000\
    0049000000211f401068656c6c6f2d737461746566756c2d311668656c6c6f2d737461746566756c2d736572\
    766963650764656661756c740373766307636c7573746572056c6f63616c00c00c0021000100000000004900\
    0000211f401068656c6c6f2d737461746566756c2d301668656c6c6f2d737461746566756c2d736572766963\
    650764656661756c740373766307636c7573746572056c6f63616c00c0a9000100010000000000040af40005\
    c054000100010000000000040af4000600002904d0000000000000";

/// xorshift64*: tiny, seedable, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ascii hex");
            u8::from_str_radix(text, 16).expect("hex digit pair")
        })
        .collect()
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![hex(DNSMASQ_REPLY)];
    let mut b = Builder::reply(9, 0x8580, "svc.example.", TYPE_SRV, [2, 0, 2]);
    b.rr_ptr_owner(TYPE_SRV, 5, &srv_rdata(0, 50, 8000, "web-0.svc.example."));
    let mut compressed = srv_rdata(0, 50, 8000, ".");
    compressed.pop();
    compressed.extend_from_slice(&[5, b'w', b'e', b'b', b'-', b'1', 0xc0, 12]);
    b.rr_ptr_owner(TYPE_SRV, 5, &compressed);
    b.rr("web-0.svc.example.", TYPE_A, 5, &[10, 0, 0, 1]);
    b.opt(0);
    seeds.push(b.buf);
    let mut a = Builder::reply(9, 0x8180, "web.example.", TYPE_A, [1, 0, 0]);
    a.rr_ptr_owner(TYPE_A, 30, &[192, 0, 2, 1]);
    seeds.push(a.buf);
    seeds.push(Builder::reply(9, 0x8183, "gone.example.", TYPE_SRV, [0, 0, 0]).buf);
    seeds
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.byte());
            }
            3 if len > 0 => {
                input.remove(rng.below(len));
            }
            4 => input.truncate(rng.below(len + 1)),
            // A compression pointer to anywhere, including forwards and at itself.
            5 if len > 1 => {
                let i = rng.below(len - 1);
                input[i] = 0xc0 | (rng.byte() & 0x3f);
                input[i + 1] = rng.byte();
            }
            // Section counts: huge counts must not mean huge allocations.
            6 if len >= 12 => {
                let i = 4 + 2 * rng.below(4);
                input[i] = rng.byte();
                input[i + 1] = rng.byte();
            }
            7 if len > 2 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                let chunk = input[start..end].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, chunk);
            }
            // An interesting byte: label length edges and label-type bits.
            _ if len > 0 => {
                let i = rng.below(len);
                input[i] = [0, 1, 63, 64, 0x3f, 0x40, 0x80, 0xc0, 0xff][rng.below(9)];
            }
            _ => {}
        }
    }
}

/// Everything a reply goes through after it arrives; none of it may panic.
fn consume(input: &[u8]) {
    // Malformed input is expected; only panics matter here.
    let _ = wire::parse_head(input);
    if let Ok(message) = wire::parse(input) {
        let _ = check(&message, TYPE_SRV);
        let _ = check(&message, TYPE_A);
        if let Ok(extracted) = extract_srv(&message, message.header.truncated()) {
            let _ = extracted.answer.to_get_body();
        }
        let _ = extract_ipv4(&message);
    }
}

#[test]
fn reply_decoder_survives_random_and_mutated_replies() {
    let secs = std::env::var("DNS_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2u64);
    let seed = std::env::var("DNS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_d115_u64);
    let mut rng = Rng(seed | 1);
    let seeds = seeds();
    for s in &seeds {
        // The seeds themselves must decode cleanly, or the fuzzer explores nothing useful.
        assert!(
            wire::parse(s).is_ok_and(|m| m.cut.is_none()),
            "seed decodes"
        );
    }
    let until = Instant::now() + Duration::from_secs(secs);
    let mut runs = 0u64;
    while Instant::now() < until {
        for _ in 0..256 {
            let input = if rng.below(8) == 0 {
                let len = rng.below(600);
                (0..len).map(|_| rng.byte()).collect()
            } else {
                let mut input = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, &mut input);
                input
            };
            consume(&input);
            runs += 1;
        }
    }
    assert!(runs > 1000, "only {runs} inputs in {secs} s");
}
