//! Choosing which peers to evaluate in a window.
//!
//! 1. Banned peers are skipped.
//! 2. Peers never rated before come first (shuffled by the seed), so a new
//!    miner is scored as soon as possible.
//! 3. Remaining slots are spread round-robin over `rating_bins` bins of
//!    peers sorted by ordinal, so strong, middling and weak peers are all
//!    re-checked every window. Within a bin, peers are drawn by weighted random
//!    sampling (Efraimidis-Spirakis) with weight `1 + windows since last rated`,
//!    so stale peers are favoured but nobody can predict being skipped.
//!
//! Everything is a pure function of (state, window, active uids, seed).

use std::collections::BTreeMap;

use crate::config::GauntletConfig;
use crate::peer_state::PeerState;
use crate::rng::SplitMix64;

/// Mixes the window into the caller's seed so reusing a seed across windows
/// still yields different draws.
fn window_seed(seed: u64, window: u64) -> u64 {
    seed ^ window.wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// Fisher-Yates shuffle driven by `rng`.
fn shuffle(items: &mut [u16], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Orders `uids` by weighted random sampling without replacement: each gets
/// the key `ln(u) / weight` and higher keys come first.
fn weighted_order(uids: &[u16], weight: impl Fn(u16) -> f64, rng: &mut SplitMix64) -> Vec<u16> {
    let mut keyed: Vec<(f64, u16)> = uids
        .iter()
        .map(|&uid| (rng.next_open_unit().ln() / weight(uid), uid))
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, uid)| uid).collect()
}

/// Picks up to `config.sample_size` uids among `active_uids` to evaluate in
/// `window`. The result is sorted ascending.
pub(crate) fn sample_peers(
    peers: &BTreeMap<u16, PeerState>,
    window: u64,
    active_uids: &[u16],
    seed: u64,
    config: &GauntletConfig,
) -> Vec<u16> {
    let mut candidates: Vec<u16> = active_uids.to_vec();
    candidates.sort_unstable();
    candidates.dedup();
    candidates.retain(|uid| peers.get(uid).is_none_or(|p| !p.is_banned(window)));

    let (mut newcomers, mut rated): (Vec<u16>, Vec<u16>) = candidates
        .into_iter()
        .partition(|uid| peers.get(uid).is_none_or(|p| p.windows_rated == 0));

    let mut rng = SplitMix64::new(window_seed(seed, window));
    shuffle(&mut newcomers, &mut rng);
    let mut chosen: Vec<u16> = newcomers.into_iter().take(config.sample_size).collect();
    let remaining = config.sample_size - chosen.len();
    if remaining == 0 || rated.is_empty() {
        chosen.sort_unstable();
        return chosen;
    }

    let ordinal = |uid: u16| {
        peers.get(&uid).map_or(f64::NEG_INFINITY, |p| {
            p.rating.ordinal(config.openskill.ordinal_z)
        })
    };
    rated.sort_by(|&a, &b| ordinal(b).total_cmp(&ordinal(a)).then(a.cmp(&b)));
    let staleness_weight = |uid: u16| {
        let last = peers.get(&uid).and_then(|p| p.last_rated_window);
        1.0 + last.map_or(0, |w| window.saturating_sub(w)) as f64
    };

    let bin_count = config.rating_bins.min(rated.len());
    let mut bins: Vec<std::vec::IntoIter<u16>> = (0..bin_count)
        .map(|b| {
            let members = &rated[b * rated.len() / bin_count..(b + 1) * rated.len() / bin_count];
            weighted_order(members, staleness_weight, &mut rng).into_iter()
        })
        .collect();

    // Random starting bin, so a sample smaller than the bin count does not
    // always favour the top-rated bin.
    let start = (rng.next_u64() % bin_count as u64) as usize;
    let mut taken = 0;
    let mut exhausted = 0;
    let mut b = start;
    while taken < remaining && exhausted < bin_count {
        exhausted = 0;
        for _ in 0..bin_count {
            if taken == remaining {
                break;
            }
            match bins[b].next() {
                Some(uid) => {
                    chosen.push(uid);
                    taken += 1;
                }
                None => exhausted += 1,
            }
            b = (b + 1) % bin_count;
        }
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rated_peer(config: &GauntletConfig, mu: f64, last_rated: u64) -> PeerState {
        let mut p = PeerState::new(0, config);
        p.rating.mu = mu;
        p.windows_rated = 1;
        p.last_rated_window = Some(last_rated);
        p
    }

    fn population(config: &GauntletConfig, n: u16) -> BTreeMap<u16, PeerState> {
        (0..n)
            .map(|uid| (uid, rated_peer(config, f64::from(uid), 0)))
            .collect()
    }

    #[test]
    fn deterministic_for_same_seed_and_varies_with_seed() {
        let config = GauntletConfig {
            sample_size: 6,
            ..Default::default()
        };
        let peers = population(&config, 40);
        let active: Vec<u16> = (0..40).collect();
        let a = sample_peers(&peers, 9, &active, 42, &config);
        let b = sample_peers(&peers, 9, &active, 42, &config);
        assert_eq!(a, b);
        assert_eq!(a.len(), 6);
        let draws: std::collections::BTreeSet<Vec<u16>> = (0..20)
            .map(|seed| sample_peers(&peers, 9, &active, seed, &config))
            .collect();
        assert!(draws.len() > 10, "seeds should give different samples");
    }

    #[test]
    fn newcomers_always_come_first() {
        let config = GauntletConfig {
            sample_size: 4,
            ..Default::default()
        };
        let peers = population(&config, 20);
        // uids 100..103 are unknown, uid 5 is known but never rated.
        let mut peers = peers;
        peers.get_mut(&5).unwrap().windows_rated = 0;
        let active: Vec<u16> = (0..20).chain(100..103).collect();
        for seed in 0..20 {
            let s = sample_peers(&peers, 3, &active, seed, &config);
            assert_eq!(s.len(), 4);
            for uid in [5, 100, 101, 102] {
                assert!(s.contains(&uid), "seed {seed}: {s:?} lacks newcomer {uid}");
            }
        }
    }

    #[test]
    fn sample_is_stratified_over_rating_bins() {
        let config = GauntletConfig {
            sample_size: 4,
            rating_bins: 4,
            ..Default::default()
        };
        let peers = population(&config, 40); // ordinal grows with uid
        let active: Vec<u16> = (0..40).collect();
        for seed in 0..50 {
            let s = sample_peers(&peers, 7, &active, seed, &config);
            let mut bins: Vec<u16> = s.iter().map(|uid| uid / 10).collect();
            bins.sort_unstable();
            assert_eq!(bins, vec![0, 1, 2, 3], "seed {seed}: {s:?}");
        }
    }

    #[test]
    fn only_active_unbanned_peers_and_no_duplicates() {
        let config = GauntletConfig {
            sample_size: 10,
            ..Default::default()
        };
        let mut peers = population(&config, 12);
        peers.get_mut(&3).unwrap().banned_until = 100;
        let active = vec![1, 1, 2, 3, 4, 4, 200];
        let s = sample_peers(&peers, 50, &active, 1, &config);
        assert_eq!(s, vec![1, 2, 4, 200]);
        assert!(sample_peers(&peers, 50, &[], 1, &config).is_empty());
    }

    #[test]
    fn stale_peers_are_favoured() {
        let config = GauntletConfig {
            sample_size: 1,
            rating_bins: 1,
            ..Default::default()
        };
        let mut peers = BTreeMap::new();
        peers.insert(1, rated_peer(&config, 25.0, 99)); // rated last window
        peers.insert(2, rated_peer(&config, 25.0, 0)); // not rated for 100 windows
        let picks_of_stale = (0..200)
            .filter(|&seed| sample_peers(&peers, 100, &[1, 2], seed, &config) == vec![2])
            .count();
        // Weights 2 vs 101: the stale peer wins about 98 % of draws.
        assert!(
            picks_of_stale > 180,
            "stale peer picked {picks_of_stale}/200"
        );
        assert!(
            picks_of_stale < 200,
            "fresh peer must still be picked sometimes"
        );
    }
}
