// Gated activation, elementwise: y = silu(g) * u (SwiGLU) or, with `gelu` set,
// y = gelu(g) * u with GELU's tanh approximation (GeGLU, Gemma); with `ungated` set,
// y = gelu(g) (GPT-2; u is not read); with `gelu` = 2, y = cap * tanh(g / cap) (soft-capping,
// `cap` the f32 bits of the last word).
struct Params { n: u32, gelu: u32, ungated: u32, cap: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i >= p.n) {
        return;
    }
    let a = g[i];
    if (p.gelu == 2u) {
        let c = bitcast<f32>(p.cap);
        let t = clamp(a / c, -15.0, 15.0);
        let e = exp(2.0 * t);
        y[i] = c * (e - 1.0) / (e + 1.0);
    } else if (p.gelu != 0u) {
        // 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))), tanh written with exp of a clamped
        // argument (WGSL's tanh overflows to NaN for large inputs on some drivers).
        let t = clamp(0.7978846 * (a + 0.044715 * a * a * a), -15.0, 15.0);
        let e = exp(2.0 * t);
        let ga = 0.5 * a * (1.0 + (e - 1.0) / (e + 1.0));
        if (p.ungated != 0u) {
            y[i] = ga;
        } else {
            y[i] = ga * u[i];
        }
    } else {
        y[i] = a / (1.0 + exp(-a)) * u[i];
    }
}
