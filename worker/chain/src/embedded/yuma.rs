//! Simplified Yuma consensus for the embedded chain.
//!
//! Each validator's weight row is normalised to sum 1; a miner's incentive is the
//! stake-weighted average of the rows: `I[u] = Σ_v S_v · W_v[u] / Σ_v S_v` over validators
//! with stake that have set weights. Unlike real Yuma there is no clipping to the stake
//! majority's consensus weight and no bonds/dividends; incentives sum to 1 whenever at least one
//! staked validator has a non-empty row.

/// One validator's input: its stake and its `(uid, weight)` row (any non-negative scale).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatorRow<'a> {
    /// Validator stake.
    pub stake: u64,
    /// Sparse weight row.
    pub weights: &'a [(u16, u16)],
}

/// Incentive of each of `n` uids (zeros when nobody with stake set weights).
pub fn incentives(n: usize, rows: &[ValidatorRow<'_>]) -> Vec<f64> {
    let mut incentive = vec![0.0f64; n];
    let mut total_stake = 0.0f64;
    for row in rows {
        let row_sum: f64 = row
            .weights
            .iter()
            .filter(|(uid, _)| usize::from(*uid) < n)
            .map(|&(_, w)| f64::from(w))
            .sum();
        if row.stake == 0 || row_sum <= 0.0 {
            continue;
        }
        let stake = row.stake as f64;
        total_stake += stake;
        for &(uid, w) in row.weights {
            if let Some(slot) = incentive.get_mut(usize::from(uid)) {
                *slot += stake * f64::from(w) / row_sum;
            }
        }
    }
    if total_stake > 0.0 {
        incentive.iter_mut().for_each(|x| *x /= total_stake);
    }
    incentive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn single_validator_row_is_normalised() {
        let w = [(1, 3), (2, 1)];
        let got = incentives(
            3,
            &[ValidatorRow {
                stake: 10,
                weights: &w,
            }],
        );
        assert!(close(&got, &[0.0, 0.75, 0.25]), "{got:?}");
    }

    #[test]
    fn stake_weighted_average_of_rows() {
        let a = [(0, 1)];
        let b = [(1, 1)];
        let got = incentives(
            2,
            &[
                ValidatorRow {
                    stake: 3,
                    weights: &a,
                },
                ValidatorRow {
                    stake: 1,
                    weights: &b,
                },
            ],
        );
        assert!(close(&got, &[0.75, 0.25]), "{got:?}");
    }

    #[test]
    fn unstaked_or_empty_rows_are_ignored_and_out_of_range_uids_dropped() {
        let a = [(0, 1)];
        let b = [(1, 5), (9, 5)];
        let got = incentives(
            2,
            &[
                ValidatorRow {
                    stake: 0,
                    weights: &a,
                },
                ValidatorRow {
                    stake: 2,
                    weights: &b,
                },
                ValidatorRow {
                    stake: 7,
                    weights: &[],
                },
            ],
        );
        assert!(close(&got, &[0.0, 1.0]), "{got:?}");
        assert!(close(&incentives(2, &[]), &[0.0, 0.0]));
    }
}
