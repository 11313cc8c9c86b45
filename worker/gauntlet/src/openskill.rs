//! OpenSkill rating with the Weng-Lin Plackett-Luce update (Weng & Lin 2011,
//! "A Bayesian Approximation Method for Online Ranking", Algorithm 4), for
//! games of single-player teams: every evaluated peer is one team.
//!
//! The `skillratings` crate only ships the Bradley-Terry variant of Weng-Lin,
//! so the Plackett-Luce update is implemented here; the tests pin it against
//! values produced by the reference Python implementation (`openskill` 6.2).

use serde::{Deserialize, Serialize};

use crate::config::OpenSkillConfig;

/// A peer's skill belief: mean `mu` and uncertainty `sigma`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    /// Mean skill.
    pub mu: f64,
    /// Standard deviation of the skill belief.
    pub sigma: f64,
}

impl Rating {
    /// The prior rating of a new peer.
    pub fn initial(config: &OpenSkillConfig) -> Self {
        Self {
            mu: config.mu,
            sigma: config.sigma,
        }
    }

    /// Conservative skill estimate `mu - z * sigma`.
    pub fn ordinal(&self, z: f64) -> f64 {
        self.mu - z * self.sigma
    }
}

/// One Plackett-Luce update of a multi-player game.
///
/// `ranks[i]` is player `i`'s place, lower is better, equal ranks are ties.
/// Before the update every sigma is widened by `tau` (additive dynamics), as
/// OpenSkill does. Returns the new ratings in input order; with fewer than two
/// players, or mismatched lengths, the input is returned unchanged.
pub fn rate_plackett_luce(
    ratings: &[Rating],
    ranks: &[u32],
    config: &OpenSkillConfig,
) -> Vec<Rating> {
    if ratings.len() < 2 || ratings.len() != ranks.len() {
        return ratings.to_vec();
    }
    let tau_sq = config.tau * config.tau;
    let widened: Vec<Rating> = ratings
        .iter()
        .map(|r| Rating {
            mu: r.mu,
            sigma: (r.sigma * r.sigma + tau_sq).sqrt(),
        })
        .collect();

    let beta_sq = config.beta * config.beta;
    let c = widened
        .iter()
        .map(|r| r.sigma * r.sigma + beta_sq)
        .sum::<f64>()
        .sqrt();
    // For every q: C_q = players placed at or below q's rank. Strengths
    // exp(mu / c) are taken relative to the largest mu in C_q, which keeps them
    // in range without changing any ratio; every player i that uses C_q is in
    // C_q itself, so the denominators are at least 1.
    let anchor: Vec<f64> = ranks
        .iter()
        .map(|&rank_q| {
            ranks
                .iter()
                .zip(&widened)
                .filter(|&(&r, _)| r >= rank_q)
                .map(|(_, p)| p.mu)
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let sum_q: Vec<f64> = ranks
        .iter()
        .zip(&anchor)
        .map(|(&rank_q, &m)| {
            ranks
                .iter()
                .zip(&widened)
                .filter(|&(&r, _)| r >= rank_q)
                .map(|(_, p)| ((p.mu - m) / c).exp())
                .sum()
        })
        .collect();
    // Players sharing q's rank.
    let tie_count: Vec<f64> = ranks
        .iter()
        .map(|&rank_q| ranks.iter().filter(|&&r| r == rank_q).count() as f64)
        .collect();

    widened
        .iter()
        .enumerate()
        .map(|(i, player)| {
            let sigma_sq = player.sigma * player.sigma;
            let mut omega = 0.0;
            let mut delta = 0.0;
            for q in 0..ranks.len() {
                if ranks[q] > ranks[i] {
                    continue;
                }
                let p = ((player.mu - anchor[q]) / c).exp() / sum_q[q];
                delta += p * (1.0 - p) / tie_count[q];
                omega += if q == i {
                    (1.0 - p) / tie_count[q]
                } else {
                    -p / tie_count[q]
                };
            }
            omega *= sigma_sq / c;
            delta *= sigma_sq / (c * c);
            // Default gamma of the reference implementation: sigma_team / c.
            delta *= sigma_sq.sqrt() / c;
            // Single-player teams: the player's share of the team variance is 1.
            Rating {
                mu: player.mu + omega,
                sigma: player.sigma * (1.0 - delta).max(config.kappa).sqrt(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: Rating, mu: f64, sigma: f64) {
        assert!((got.mu - mu).abs() < 1e-9, "mu {} vs {mu}", got.mu);
        assert!(
            (got.sigma - sigma).abs() < 1e-9,
            "sigma {} vs {sigma}",
            got.sigma
        );
    }

    // Expected values: openskill 6.2.0 (Python), PlackettLuce() with defaults.

    #[test]
    fn two_default_players_match_reference() {
        let cfg = OpenSkillConfig::default();
        let r = Rating::initial(&cfg);
        let out = rate_plackett_luce(&[r, r], &[0, 1], &cfg);
        assert_close(out[0], 27.635389493140497, 8.06590141354368);
        assert_close(out[1], 22.364610506859503, 8.06590141354368);
    }

    #[test]
    fn four_players_with_tie_match_reference() {
        // rate([[a],[b],[c],[d]], scores=[1, 0, 0, -1]), all default ratings.
        let cfg = OpenSkillConfig::default();
        let r = Rating::initial(&cfg);
        let out = rate_plackett_luce(&[r, r, r, r], &[0, 1, 1, 3], &cfg);
        assert_close(out[0], 27.795252672501135, 8.263571791259416);
        assert_close(out[1], 24.689416369722096, 8.17961798837266);
        assert_close(out[2], 24.689416369722096, 8.17961798837266);
        assert_close(out[3], 22.825914588054673, 8.17961798837266);
        assert!((out[0].ordinal(3.0) - 3.0045372987228873).abs() < 1e-9);
    }

    #[test]
    fn unequal_priors_match_reference() {
        // rate(..., scores=[0.5, 0.1, 0.1, -2.0]) with priors
        // (25, 25/3), (30, 5), (20, 7), (27, 3).
        let cfg = OpenSkillConfig::default();
        let priors = [
            Rating {
                mu: 25.0,
                sigma: 25.0 / 3.0,
            },
            Rating {
                mu: 30.0,
                sigma: 5.0,
            },
            Rating {
                mu: 20.0,
                sigma: 7.0,
            },
            Rating {
                mu: 27.0,
                sigma: 3.0,
            },
        ];
        let out = rate_plackett_luce(&priors, &[0, 1, 1, 3], &cfg);
        assert_close(out[0], 28.567078688410863, 8.201594191671077);
        assert_close(out[1], 29.566904501815504, 4.956458680726685);
        assert_close(out[2], 20.37049926403053, 6.886593352477283);
        assert_close(out[3], 26.625293764062427, 2.9959465536372787);
    }

    #[test]
    fn zero_tau_matches_reference() {
        let cfg = OpenSkillConfig {
            tau: 0.0,
            ..Default::default()
        };
        let priors = [
            Rating::initial(&cfg),
            Rating {
                mu: 30.0,
                sigma: 5.0,
            },
        ];
        let out = rate_plackett_luce(&priors, &[0, 1], &cfg);
        assert_close(out[0], 28.71655760199996, 7.932290801502529);
        assert_close(out[1], 28.662039263280015, 4.949015600812208);
    }

    #[test]
    fn huge_ratings_stay_finite() {
        let cfg = OpenSkillConfig::default();
        let priors = [
            Rating {
                mu: 5000.0,
                sigma: 1.0,
            },
            Rating {
                mu: -5000.0,
                sigma: 1.0,
            },
        ];
        for ranks in [[1, 0], [0, 1]] {
            let out = rate_plackett_luce(&priors, &ranks, &cfg);
            assert!(
                out.iter()
                    .all(|r| r.mu.is_finite() && r.sigma.is_finite() && r.sigma > 0.0)
            );
        }
        let upset = rate_plackett_luce(&priors, &[1, 0], &cfg);
        assert!(upset[0].mu < 5000.0 && upset[1].mu > -5000.0);
    }

    #[test]
    fn degenerate_inputs_are_returned_unchanged() {
        let cfg = OpenSkillConfig::default();
        let r = Rating::initial(&cfg);
        assert_eq!(rate_plackett_luce(&[r], &[0], &cfg), vec![r]);
        assert_eq!(rate_plackett_luce(&[r, r], &[0], &cfg), vec![r, r]);
    }
}
