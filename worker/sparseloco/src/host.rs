//! Host (CPU) memory access to tensors and the thread split used by the kernels.

use std::mem::MaybeUninit;

use tch::{Device, Kind, Tensor};

use crate::error::SparseLocoError;

/// Borrows the storage of a CPU, contiguous, `f32` tensor as a slice.
///
/// Returns `None` when the tensor is not such a tensor. The caller must not mutate the
/// tensor through another handle (a `shallow_clone`) while the slice is alive.
pub(crate) fn f32_slice(tensor: &Tensor) -> Option<&[f32]> {
    if !tensor.defined()
        || tensor.device() != Device::Cpu
        || tensor.kind() != Kind::Float
        || !tensor.is_contiguous()
    {
        return None;
    }
    let numel = tensor.numel();
    if numel == 0 {
        return Some(&[]);
    }
    let ptr = tensor.data_ptr() as *const f32;
    if ptr.is_null() || !ptr.is_aligned() {
        return None;
    }
    // SAFETY: the tensor is defined, on the CPU, contiguous and of kind Float, so its
    // storage holds `numel` initialised, aligned f32 values starting at `data_ptr`. The
    // borrow of `tensor` keeps the storage alive for the slice's lifetime.
    Some(unsafe { std::slice::from_raw_parts(ptr, numel) })
}

/// A new CPU `f32` tensor of `numel` elements; `fill` must write every element (the
/// storage starts uninitialised, as with `torch.empty`).
pub(crate) fn new_f32_tensor(
    numel: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Result<Tensor, SparseLocoError> {
    let len = i64::try_from(numel)
        .map_err(|_| SparseLocoError::InvalidSpecs("tensor too large".into()))?;
    let tensor = Tensor::f_empty([len], (Kind::Float, Device::Cpu))?;
    if numel > 0 {
        let ptr = tensor.data_ptr() as *mut MaybeUninit<f32>;
        if ptr.is_null() || !ptr.is_aligned() {
            return Err(SparseLocoError::InvalidSpecs(
                "torch returned an unusable buffer".into(),
            ));
        }
        // SAFETY: `tensor` was just allocated here as a contiguous CPU Float tensor of
        // `numel` (possibly uninitialised, hence `MaybeUninit`) aligned elements; no other
        // handle to it exists, so this is the only reference to its storage while `fill`
        // runs.
        let data = unsafe { std::slice::from_raw_parts_mut(ptr, numel) };
        fill(data);
    }
    Ok(tensor)
}

/// Threads used by the CPU kernels: torch's intra-op thread count (so
/// `torch.set_num_threads` / `tch::set_num_threads` govern both), at least 1.
pub(crate) fn kernel_threads() -> usize {
    usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1)
}

/// Splits `data` (`bands` bands of `band_elems` elements each) into contiguous groups of
/// bands, one per kernel thread, and runs `work(first_band, group)` on each in parallel.
/// Results come back in band order.
pub(crate) fn par_bands<T, R, F>(data: &mut [T], band_elems: usize, bands: usize, work: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, &mut [T]) -> R + Sync,
{
    let threads = kernel_threads().min(bands).max(1);
    if threads == 1 || band_elems == 0 {
        return vec![work(0, data)];
    }
    let per_thread = bands.div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = data
            .chunks_mut(per_thread * band_elems)
            .enumerate()
            .map(|(t, group)| scope.spawn(move || work(t * per_thread, group)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Maps `items` with `work` on up to [`kernel_threads`] threads, each taking a contiguous
/// run of items of about equal total `weight`. Results come back in item order.
pub(crate) fn par_map_weighted<T, R, F>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    work: F,
) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = kernel_threads().min(items.len()).max(1);
    let total: usize = items.iter().map(&weight).sum();
    // Small inputs are not worth a thread.
    if threads == 1 || total < 1 << 16 {
        return items.iter().map(work).collect();
    }
    let mut groups: Vec<&[T]> = Vec::with_capacity(threads);
    let (mut start, mut acc) = (0, 0usize);
    for (i, item) in items.iter().enumerate() {
        acc += weight(item);
        if acc * threads >= total * (groups.len() + 1) && groups.len() + 1 < threads {
            groups.push(&items[start..=i]);
            start = i + 1;
        }
    }
    groups.push(&items[start..]);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| scope.spawn(move || group.iter().map(work).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}
