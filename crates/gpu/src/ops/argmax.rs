//! The index of the largest logit (ties: the smaller index), so greedy decode reads back one
//! token id, not the logits.

use crate::{Error, Gpu, Result};

/// Writes the index into `out` (a u32 buffer) and returns nothing; read it with
/// [`Gpu::read_u32`]. An index of u32::MAX means every value was NaN.
pub fn argmax(gpu: &Gpu, x: &wgpu::Buffer, out: &wgpu::Buffer, n: usize) -> Result<()> {
    if n == 0 || n > u32::MAX as usize {
        return Err(Error::Shape(format!("argmax of {n}")));
    }
    let p = gpu.uniform(&[n as u32, 0, 0, 0])?;
    gpu.dispatch(&gpu.pipelines().argmax, &[&p, x, out], (1, 1, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    #[test]
    fn matches_the_cpu_argmax() {
        let gpu = gpu();
        let mut r = rng(5);
        for n in [1usize, 255, 49152, 100_003] {
            let mut x = random(&mut r, n, 30.0);
            // A tie: the smaller index wins, as on the CPU.
            if n > 10 {
                let m = x.iter().cloned().fold(f32::MIN, f32::max);
                x[3] = m + 1.0;
                x[n - 2] = m + 1.0;
            }
            let xb = gpu.upload_f32("x", &x).unwrap();
            let ob = gpu.upload("out", &[0xff; 4]).unwrap();
            argmax(&gpu, &xb, &ob, n).unwrap();
            let got = gpu.read_u32(&ob, 1).unwrap()[0];
            let want = tiller_engine::sampling::argmax(&x);
            println!("argmax of {n} on {}: {got} (CPU {want})", gpu.name());
            assert_eq!(got, want);
        }
    }
}
