//! Every validation rule of a run manifest. The operator and the worker both call
//! [`validate`], so one rejects exactly what the other would, with the same field path.

use std::fmt;

use crate::compression::QUANTIZATION_BITS;
use crate::data_source::{DatasetUri, Sampling, is_sha256_hex};
use crate::model_shape::{BUNDLED_VOCAB_SIZE, PRESET_NAMES};
use crate::sections::DataSection;
use crate::{MANIFEST_VERSION, RunManifest};

/// Longest run id (it is the first segment of every object key of the run).
pub const MAX_RUN_ID_LEN: usize = 128;

/// One rule a manifest breaks, at a field path such as `sparseloco.chunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field in the manifest document.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Checks a run id: one object-key segment of `[A-Za-z0-9._-]`, not starting with `.`,
/// at most [`MAX_RUN_ID_LEN`] bytes. Returns the reason it is refused.
pub fn check_run_id(run_id: &str) -> Result<(), &'static str> {
    if run_id.is_empty() {
        return Err("must not be empty");
    }
    if run_id.len() > MAX_RUN_ID_LEN {
        return Err("longer than 128 bytes");
    }
    if run_id.starts_with('.') {
        return Err("must not start with '.'");
    }
    if !run_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("characters outside [A-Za-z0-9._-]");
    }
    Ok(())
}

struct Checker(Vec<FieldError>);

impl Checker {
    fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn require(&mut self, ok: bool, path: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.fail(path, message());
        }
    }

    fn positive_finite(&mut self, path: &str, value: f64) {
        self.require(value.is_finite() && value > 0.0, path, || {
            format!("must be a finite number > 0, got {value}")
        });
    }
}

/// Every rule the manifest breaks (empty when it is valid), in document order.
pub fn validate(manifest: &RunManifest) -> Vec<FieldError> {
    let mut c = Checker(Vec::new());
    c.require(
        manifest.manifest_version == MANIFEST_VERSION,
        "manifestVersion",
        || {
            format!(
                "this worker reads version {MANIFEST_VERSION}, got {}",
                manifest.manifest_version
            )
        },
    );
    if let Err(reason) = check_run_id(&manifest.run_id) {
        c.fail("runId", format!("{reason} (got {:?})", manifest.run_id));
    }
    check_model(&mut c, manifest);
    check_data(&mut c, manifest);
    check_training(&mut c, manifest);
    check_window(&mut c, manifest);
    check_sparseloco(&mut c, manifest);
    check_gauntlet(&mut c, manifest);
    c.require(
        manifest.weights.interval_windows > 0,
        "weights.intervalWindows",
        || "must be > 0".into(),
    );
    c.0
}

fn check_model(c: &mut Checker, manifest: &RunManifest) {
    let model = &manifest.model;
    let shape = match (&model.preset, &model.config) {
        (Some(_), Some(_)) => {
            c.fail("model", "set either preset or config, not both");
            return;
        }
        (None, None) => {
            c.fail(
                "model",
                "set preset or config (every dimension; nothing is filled in)",
            );
            return;
        }
        (Some(name), None) => match model.resolve() {
            Some(shape) => shape,
            None => {
                c.fail(
                    "model.preset",
                    format!(
                        "unknown preset {name:?} (expected one of {})",
                        PRESET_NAMES.join(", ")
                    ),
                );
                return;
            }
        },
        (None, Some(config)) => config.clone(),
    };
    let prefix = if model.preset.is_some() {
        "model.preset"
    } else {
        "model.config"
    };
    if let Err(err) = shape.validate() {
        let path = if model.preset.is_some() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", err.field)
        };
        c.fail(&path, err.message);
    }
    match &manifest.data {
        DataSection::Dataset(_) => {}
        DataSection::Bundled {} => c.require(
            shape.vocab_size >= BUNDLED_VOCAB_SIZE,
            &format!("{prefix}.vocab_size"),
            || {
                format!(
                    "{} cannot hold the bundled corpus's {BUNDLED_VOCAB_SIZE} token ids",
                    shape.vocab_size
                )
            },
        ),
    }
}

/// The dataset reference's syntax. Whether the dataset fits the model (vocabulary, EOS) is
/// checked by the worker once it has read the dataset manifest.
fn check_data(c: &mut Checker, manifest: &RunManifest) {
    let DataSection::Dataset(data) = &manifest.data else {
        return;
    };
    if let Err(err) = DatasetUri::parse(&data.uri) {
        c.fail("data.dataset.uri", err.reason);
    }
    c.require(is_sha256_hex(&data.sha256), "data.dataset.sha256", || {
        format!(
            "must be 64 lower-case hex digits (the dataset manifest's SHA-256), got {:?}",
            data.sha256
        )
    });
    if let Some(endpoint) = &data.endpoint {
        c.require(
            endpoint.starts_with("http://") || endpoint.starts_with("https://"),
            "data.dataset.endpoint",
            || format!("must be an http:// or https:// URL, got {endpoint:?}"),
        );
        c.require(
            matches!(DatasetUri::parse(&data.uri), Ok(DatasetUri::S3 { .. })),
            "data.dataset.endpoint",
            || "only an s3:// dataset has an endpoint".into(),
        );
    }
    if let Some(region) = &data.region {
        c.require(!region.trim().is_empty(), "data.dataset.region", || {
            "must not be empty (omit it for `auto`)".into()
        });
    }
    if let Sampling::ShardWindow {
        shards,
        rotate_every_windows,
    } = data.sampling
    {
        c.require(
            shards > 0,
            "data.dataset.sampling.shardWindow.shards",
            || "must be > 0".into(),
        );
        c.require(
            rotate_every_windows > 0,
            "data.dataset.sampling.shardWindow.rotateEveryWindows",
            || "must be > 0".into(),
        );
    }
}

fn check_training(c: &mut Checker, manifest: &RunManifest) {
    let t = &manifest.training;
    c.require(t.inner_steps > 0, "training.innerSteps", || {
        "must be > 0".into()
    });
    c.require(t.micro_batch_size > 0, "training.microBatchSize", || {
        "must be > 0".into()
    });
    c.require(
        t.batch_size > 0
            && t.micro_batch_size > 0
            && t.batch_size.is_multiple_of(t.micro_batch_size),
        "training.batchSize",
        || {
            format!(
                "{} is not a positive multiple of microBatchSize {}",
                t.batch_size, t.micro_batch_size
            )
        },
    );
    c.positive_finite("training.innerLr", t.inner_lr);
    c.positive_finite("training.outerLr", t.outer_lr);
    c.require(t.total_steps > 0, "training.totalSteps", || {
        "must be > 0".into()
    });
    c.require(
        t.min_lr_ratio.is_finite() && (0.0..=1.0).contains(&t.min_lr_ratio),
        "training.minLrRatio",
        || format!("must be in [0, 1], got {}", t.min_lr_ratio),
    );
    c.require(
        t.weight_decay.is_finite() && t.weight_decay >= 0.0,
        "training.weightDecay",
        || format!("must be a finite number >= 0, got {}", t.weight_decay),
    );
    c.require(
        t.grad_clip.is_finite() && t.grad_clip >= 0.0,
        "training.gradClip",
        || {
            format!(
                "must be a finite number >= 0 (0 disables), got {}",
                t.grad_clip
            )
        },
    );
}

fn check_window(c: &mut Checker, manifest: &RunManifest) {
    let w = &manifest.window;
    c.require(w.blocks_per_window > 0, "window.blocksPerWindow", || {
        "must be > 0".into()
    });
    c.require(
        w.upload_deadline_secs > 0,
        "window.uploadDeadlineSecs",
        || "must be > 0".into(),
    );
}

fn check_sparseloco(c: &mut Checker, manifest: &RunManifest) {
    let s = &manifest.sparseloco;
    if let Err(err) = s.config().validate() {
        c.fail(&format!("sparseloco.{}", err.field), err.message);
    }
    c.require(
        s.quantization_bits == QUANTIZATION_BITS,
        "sparseloco.quantizationBits",
        || {
            format!(
                "the wire format encodes {QUANTIZATION_BITS}-bit codes only, got {}",
                s.quantization_bits
            )
        },
    );
}

fn check_gauntlet(c: &mut Checker, manifest: &RunManifest) {
    let g = &manifest.gauntlet;
    c.require(g.eval_batches > 0, "gauntlet.evalBatches", || {
        "must be > 0".into()
    });
    c.positive_finite("gauntlet.evalLrFactor", g.eval_lr_factor);
    c.require(g.top_peers > 0, "gauntlet.topPeers", || {
        "must be > 0".into()
    });
    if let Err(err) = g.config().validate() {
        c.fail("gauntlet", err.to_string());
    }
}
