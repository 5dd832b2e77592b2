//! SplitMix64: a tiny deterministic generator, so failures reproduce.

/// The generator's state.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn fraction(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Approximately standard normal: the sum of four uniforms, centred
    /// and scaled to variance 1.
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.fraction()).sum();
        (s - 2.0) * 3f32.sqrt()
    }

    /// A vector of `dim` normals scaled by `sigma`.
    pub fn normal_vector(&mut self, dim: usize, sigma: f32) -> Vec<f32> {
        (0..dim).map(|_| self.normal() * sigma).collect()
    }

    /// A vector of `dim` uniforms in [-1, 1), never all zero.
    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        loop {
            let v: Vec<f32> = (0..dim).map(|_| self.unit()).collect();
            if v.iter().any(|x| *x != 0.0) {
                return v;
            }
        }
    }
}
