//! Data parallelism: rayon natively, plain loops in wasm (a Web Worker has one thread).

/// Run `f` on every item, in parallel where threads exist.
#[cfg(not(target_arch = "wasm32"))]
pub fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync + Send) {
    use rayon::prelude::*;
    items.into_par_iter().for_each(f);
}

#[cfg(target_arch = "wasm32")]
pub fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync + Send) {
    items.into_iter().for_each(f);
}

/// Threads available to [`for_each`].
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

/// Split `out` into consecutive pieces of the given lengths.
pub fn split_lengths<T>(mut out: &mut [T], lens: impl IntoIterator<Item = usize>) -> Vec<&mut [T]> {
    let mut v = Vec::new();
    for n in lens {
        let (a, b) = out.split_at_mut(n);
        v.push(a);
        out = b;
    }
    v
}

/// `f` of every item, in order, in parallel where threads exist.
#[cfg(not(target_arch = "wasm32"))]
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    items.into_par_iter().map(f).collect()
}

#[cfg(target_arch = "wasm32")]
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    items.into_iter().map(f).collect()
}
