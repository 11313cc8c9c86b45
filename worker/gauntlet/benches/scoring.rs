//! Cost of the scoring core per window: `cargo bench -p worker-gauntlet --profile dev`.
//! Prints figures; no assertions.

use std::hint::black_box;
use std::time::Instant;

use worker_gauntlet::{
    Fingerprint, Gauntlet, GauntletConfig, Outcome, PeerOutcome, detect_copies, fingerprint_entry,
};

fn time<T>(label: &str, reps: u32, mut f: impl FnMut() -> T) {
    let start = Instant::now();
    for _ in 0..reps {
        black_box(f());
    }
    let per = start.elapsed() / reps;
    println!("{label:<60} {per:>12.2?}");
}

fn outcome(uid: u16) -> PeerOutcome {
    let gain = 0.001 * (1.0 + f64::from(uid % 17));
    PeerOutcome::new(
        uid,
        Outcome::Evaluated {
            loss_before_assigned: 3.0,
            loss_after_assigned: 3.0 * (1.0 - 1.5 * gain),
            loss_before_random: 3.0,
            loss_after_random: 3.0 * (1.0 - gain),
            steps_behind: 0.0,
            digest_ok: true,
        },
    )
}

fn main() {
    let active: Vec<u16> = (0..256).collect();
    for evaluated in [10u16, 64, 256] {
        let config = GauntletConfig {
            sample_size: usize::from(evaluated),
            ..Default::default()
        };
        let mut g = Gauntlet::new(config).unwrap();
        g.mark_seen(0, &active);
        let mut window = 0;
        time(
            &format!("mark_seen(256) + record_window({evaluated} outcomes)"),
            200,
            || {
                window += 1;
                g.mark_seen(window, &active);
                g.record_window(window, (0..evaluated).map(outcome).collect())
                    .unwrap()
            },
        );
        time(
            &format!("sample_peers, sample {evaluated} of 256"),
            200,
            || g.sample_peers(window + 1, &active, 7),
        );
        time("weights + peer_list, 256 peers", 200, || {
            (g.weights(), g.peer_list(window + 1))
        });
        let json = g.to_json().unwrap();
        println!("{:<60} {:>9} B", "state JSON, 256 peers", json.len());
    }

    // Copy detection over 20 uploads, each fingerprint = k=64 entries of N chunks.
    for chunks in [256u32, 4096] {
        let fps: Vec<Fingerprint> = (0..20u16)
            .map(|uid| {
                let entries = (0..chunks)
                    .flat_map(|c| {
                        (0..64u16).map(move |i| {
                            fingerprint_entry(0, c, (i * 61 + uid * 7 + (c % 13) as u16) % 4096)
                        })
                    })
                    .collect();
                Fingerprint::new(uid, u64::from(uid), entries)
            })
            .collect();
        time(
            &format!(
                "detect_copies, 20 peers x {} entries",
                u64::from(chunks) * 64
            ),
            5,
            || detect_copies(&fps, 0.9),
        );
    }
}
