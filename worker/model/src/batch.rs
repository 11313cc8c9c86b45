//! Training batches: inputs, shifted labels and EOS-boundary masking.

use tch::{Device, Tensor};

use crate::error::{ModelError, Result};

/// Label value that the loss ignores (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// One micro-batch: `input_ids` and `labels`, both `[batch, seq_len]` int64 on the CPU.
/// `labels[b][t]` is the target of position `t` (already shifted: the token after it).
#[derive(Debug)]
pub struct Batch {
    /// Token ids fed to the model.
    pub input_ids: Tensor,
    /// Next-token targets, [`IGNORE_INDEX`] where masked.
    pub labels: Tensor,
}

impl Batch {
    /// Builds a batch from samples of `seq_len + 1` tokens each.
    ///
    /// For sample `s`, `input = s[..seq_len]` and `label[t] = s[t + 1]`, except that
    /// **`label[t]` is [`IGNORE_INDEX`] when `input[t]` is the EOS token**: the next token
    /// starts a new document, so predicting it from the previous document would train on
    /// a cross-document boundary. Predicting the EOS itself (end of document) is kept.
    pub fn from_samples(samples: &[Vec<i64>], eos_token_id: Option<i64>) -> Result<Batch> {
        let Some(first) = samples.first() else {
            return Err(ModelError::Data("a batch needs at least one sample".into()));
        };
        if first.len() < 2 {
            return Err(ModelError::Data("samples need at least two tokens".into()));
        }
        let seq_len = first.len() - 1;
        let mut inputs = Vec::with_capacity(samples.len() * seq_len);
        let mut labels = Vec::with_capacity(samples.len() * seq_len);
        for sample in samples {
            if sample.len() != seq_len + 1 {
                return Err(ModelError::Data(format!(
                    "samples of different lengths ({} and {})",
                    seq_len + 1,
                    sample.len()
                )));
            }
            for pair in sample.windows(2) {
                let (current, next) = (pair[0], pair[1]);
                inputs.push(current);
                labels.push(if Some(current) == eos_token_id {
                    IGNORE_INDEX
                } else {
                    next
                });
            }
        }
        let shape = [samples.len() as i64, seq_len as i64];
        Ok(Batch {
            input_ids: Tensor::f_from_slice(&inputs)?.f_reshape(shape)?,
            labels: Tensor::f_from_slice(&labels)?.f_reshape(shape)?,
        })
    }

    /// Number of samples.
    pub fn batch_size(&self) -> i64 {
        self.input_ids.size().first().copied().unwrap_or(0)
    }

    /// Tokens per sample.
    pub fn seq_len(&self) -> i64 {
        self.input_ids.size().get(1).copied().unwrap_or(0)
    }

    /// Number of labels that count in the loss.
    pub fn target_count(&self) -> Result<i64> {
        Ok(self
            .labels
            .f_ne(IGNORE_INDEX)?
            .f_sum(tch::Kind::Int64)?
            .f_int64_value(&[])?)
    }

    /// Copies the batch to `device`.
    pub fn to_device(&self, device: Device) -> Result<Batch> {
        Ok(Batch {
            input_ids: self.input_ids.f_to_device(device)?,
            labels: self.labels.f_to_device(device)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &Tensor, i: i64) -> Vec<i64> {
        Vec::<i64>::try_from(t.get(i)).unwrap()
    }

    #[test]
    fn labels_are_shifted_and_masked_after_eos() {
        let eos = 0;
        let samples = vec![vec![5, 6, 0, 7, 8], vec![0, 1, 2, 0, 0]];
        let batch = Batch::from_samples(&samples, Some(eos)).unwrap();
        assert_eq!(batch.input_ids.size(), vec![2, 4]);
        assert_eq!(row(&batch.input_ids, 0), vec![5, 6, 0, 7]);
        // 6 -> 0 (predicting EOS) is kept, 0 -> 7 (crossing into the next document) is masked.
        assert_eq!(row(&batch.labels, 0), vec![6, 0, IGNORE_INDEX, 8]);
        assert_eq!(
            row(&batch.labels, 1),
            vec![IGNORE_INDEX, 2, 0, IGNORE_INDEX]
        );
        assert_eq!(batch.target_count().unwrap(), 5);
        let unmasked = Batch::from_samples(&samples, None).unwrap();
        assert_eq!(row(&unmasked.labels, 0), vec![6, 0, 7, 8]);
    }

    #[test]
    fn ragged_or_empty_samples_are_rejected() {
        assert!(Batch::from_samples(&[], Some(0)).is_err());
        assert!(Batch::from_samples(&[vec![1]], Some(0)).is_err());
        assert!(Batch::from_samples(&[vec![1, 2, 3], vec![1, 2]], Some(0)).is_err());
    }
}
