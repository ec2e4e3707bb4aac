// camc kernel `shapleycam`: CUDA C for NVRTC, no headers needed.
// ABI (docs/cuda.md), one entry point per input dtype variant:
//   extern "C" __global__ void camc_shapleycam_<dtype>(
//     const T0* in0,  // `A` [k,h,w] per image
//     const T1* in1,  // `G` [k,h,w] per image
//     const T2* in2,  // `H` [k,h,w] per image
//     float* out,  // [h,w] per image, or out_h*out_w
//     float* scratch,  // gridDim.x * (4*h*w + k + h*w + h*w, rounded up to even) floats
//     int* bad,  // n non-finite counts when out_h > 0, or NULL
//     int n, int c, int k, int d, int h, int w,  // c = 1 without classes, d = 1 in 2-D
//     int out_h, int out_w);  // 0, 0: the raw map; else min-max, resize, min-max
// T is float, or camc_f16 / camc_bf16 (16-bit storage, computed in f32).
// Launch: blockDim.x = 512, any gridDim.x >= 1 (images are grid-strided),
// no dynamic shared memory. Inputs aligned to their element size; 16-byte aligned runs
// are read with 16-byte loads.

#undef CAMC_THREADS
#define CAMC_THREADS 512
#define CAMC_NAN_F __int_as_float(0x7fc00000)
#define CAMC_NAN __longlong_as_double(0x7ff8000000000000LL)
#define CAMC_INF __longlong_as_double(0x7ff0000000000000LL)

// f16 and bf16 inputs are read as their bits and widened to f32 (exactly, in integer code).
struct camc_f16 { unsigned short bits; };
struct camc_bf16 { unsigned short bits; };
__device__ __forceinline__ float camc_ld(float x) { return x; }
__device__ __forceinline__ float camc_ld(camc_f16 x) {
    const unsigned int sign = ((unsigned int)x.bits & 0x8000u) << 16;
    const unsigned int exponent = (x.bits >> 10) & 0x1fu, mantissa = x.bits & 0x3ffu;
    if (exponent == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0) return __uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    const float tiny = (float)mantissa * 5.9604644775390625e-8f;  // subnormal: mantissa * 2^-24
    return sign ? -tiny : tiny;
}
__device__ __forceinline__ float camc_ld(camc_bf16 x) {
    return __uint_as_float(((unsigned int)x.bits) << 16);
}
// Integer inputs (a class index per image) are read as the nearest float.
__device__ __forceinline__ float camc_ld(long long x) { return (float)x; }
__device__ __forceinline__ float camc_ld(int x) { return (float)x; }

// Blocks an SM must be able to hold at once, 1 024 threads in all: ptxas then keeps a thread to
// 64 registers, which the kernels fit without spilling (left to itself it chose from 40 to 128,
// some with spills; sm_90, NVRTC 13).
#define CAMC_MIN_BLOCKS (CAMC_THREADS < 1024 ? 1024 / CAMC_THREADS : 1)

// The channel phase's stage in shared memory, in floats: 16 a thread (four 16-byte loads of
// f32), at most what keeps it and camc_red within 40 KB a block (static shared memory stays
// under 48 KB). A block then takes 80 bytes a thread: shared memory never keeps an SM from
// holding its 2 048 threads, whatever the block size.
#define CAMC_STAGE (16 * CAMC_THREADS < (40960 - 16 * CAMC_THREADS) / 4 ? 16 * CAMC_THREADS : (40960 - 16 * CAMC_THREADS) / 4)

// Copies x[0..count) to st as f32 with the whole block: 16-byte loads for the 16-byte aligned
// middle of the range, one value at a time at its ends (x must be aligned to its element size;
// a range that is not, for its type, is read one value at a time). Where st + head is 16-byte
// aligned too, the widened values are stored 16 bytes at a time: a warp's stores then meet no
// (f32) or two-way (f16, bf16) bank conflicts, against 4- and 8-way for single floats.
struct alignas(16) camc_vec { unsigned int bits[4]; };
struct alignas(16) camc_f4 { float v[4]; };
struct alignas(16) camc_stage_buffer { float v[CAMC_STAGE]; };
template <typename T>
__device__ __forceinline__ void camc_stage(const T* __restrict__ x, int count, float* __restrict__ st) {
    constexpr int V = 16 / sizeof(T);
    const unsigned long long address = (unsigned long long)x;
    int head = address % sizeof(T) != 0 ? count : (int)((16 - address % 16) % 16 / sizeof(T));
    if (head > count) head = count;
    const int body = (count - head) / V;
    const camc_vec* const vectors = reinterpret_cast<const camc_vec*>(x + head);
    if (V % 4 == 0 && (unsigned long long)(st + head) % 16 == 0) {
        #pragma unroll 4
        for (int i = threadIdx.x; i < body; i += CAMC_THREADS) {
            const camc_vec v = vectors[i];
            const T* const lanes = reinterpret_cast<const T*>(&v);
            #pragma unroll
            for (int q = 0; q < V / 4; ++q) {
                camc_f4 f;
                #pragma unroll
                for (int j = 0; j < 4; ++j) f.v[j] = camc_ld(lanes[4 * q + j]);
                *reinterpret_cast<camc_f4*>(st + head + i * V + 4 * q) = f;
            }
        }
    } else {
        #pragma unroll 4
        for (int i = threadIdx.x; i < body; i += CAMC_THREADS) {
            const camc_vec v = vectors[i];
            const T* const lanes = reinterpret_cast<const T*>(&v);
            #pragma unroll
            for (int j = 0; j < V; ++j) st[head + i * V + j] = camc_ld(lanes[j]);
        }
    }
    for (int e = threadIdx.x; e < head; e += CAMC_THREADS) st[e] = camc_ld(x[e]);
    for (int e = head + body * V + threadIdx.x; e < count; e += CAMC_THREADS) st[e] = camc_ld(x[e]);
}

// Channels per block of the channel phase, `per` staged floats each: as many as the stage holds,
// a multiple of 8 when more than 8 (so that blocks of a 16-byte aligned image stay aligned), or
// every channel when one does not fit (then the phase reads global memory).
__device__ __forceinline__ int camc_block_channels(int K, int per, bool staged) {
    const int all = K > 0 ? K : 1;
    if (!staged) return all;
    int kc = CAMC_STAGE / per;
    if (kc >= 8) kc -= kc % 8;
    return kc < all ? kc : all;
}

// min/max propagate NaN (numpy's minimum/maximum), unlike fminf/fmaxf.
__device__ __forceinline__ float camc_max(float a, float b) {
    return (a != a || b != b) ? CAMC_NAN_F : fmaxf(a, b);
}
__device__ __forceinline__ float camc_min(float a, float b) {
    return (a != a || b != b) ? CAMC_NAN_F : fminf(a, b);
}
__device__ __forceinline__ float camc_sign(float x) {
    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x * 0.0f);
}

// Combining partial reductions: 0 adds, 1 takes the maximum, 2 the minimum (NaN wins).
template <int J> __device__ __forceinline__ double camc_join(double a, double b) {
    if (J == 0) return a + b;
    if (a != a || b != b) return CAMC_NAN;
    return J == 1 ? fmax(a, b) : fmin(a, b);
}

// Joins the values of aligned groups of `g` lanes (g a power of two <= 32) with shuffles;
// every lane of the warp must call it.
template <int J> __device__ __forceinline__ double camc_warp_join(double v, int g) {
    for (int offset = g / 2; offset > 0; offset /= 2) {
        v = camc_join<J>(v, __shfl_xor_sync(0xffffffffu, v, offset));
    }
    return v;
}

// How a block's threads share a reduction of O outputs of R values each. `inner`: each output's
// values are contiguous, so a group of g consecutive lanes (a power of two) reads one output and
// P = CAMC_THREADS / g outputs are done at once. Otherwise the outputs are contiguous and
// P consecutive threads take P consecutive outputs, g = CAMC_THREADS / P threads per output.
struct camc_split { int g, p, slot, lane; };
__device__ __forceinline__ camc_split camc_split_for(int O, int R, bool inner) {
    const int t = threadIdx.x;
    camc_split s;
    if (inner) {
        int g = 1;
        while (g < R && g < CAMC_THREADS) g *= 2;
        if (O >= CAMC_THREADS / 32 && g > 32) g = 32;
        // Smaller groups when every thread still has work: each lane then issues up to 16
        // independent loads per output, which keeps enough reads in flight (measured on an H100:
        // 8 gave 51% of the copy bandwidth, 16 gave 62%, 4 gave 36%).
        while (g > 1 && (g / 2) * 16 >= R && O * (g / 2) >= CAMC_THREADS) g /= 2;
        s.g = g; s.p = CAMC_THREADS / g; s.slot = t / g; s.lane = t % g;
    } else {
        const int p = O < 1 ? 1 : (O < CAMC_THREADS ? (int)O : CAMC_THREADS);
        s.p = p; s.g = CAMC_THREADS / p; s.slot = t % p; s.lane = t / p;
    }
    return s;
}

// The thread that holds member m of the group of `slot`.
__device__ __forceinline__ int camc_member(camc_split s, bool inner, int m) {
    return inner ? s.slot * s.g + m : m * s.p + s.slot;
}

// A block-wide reduction of one value per thread through `red` (CAMC_THREADS doubles): J = 0
// adds, 1 takes the maximum, 2 the minimum. Every thread gets the result.
template <int J> __device__ double camc_block_reduce(double v, double* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int half = CAMC_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            const double a = red[threadIdx.x], b = red[threadIdx.x + half];
            red[threadIdx.x] = J == 0 ? a + b : (J == 1 ? fmax(a, b) : fmin(a, b));
        }
        __syncthreads();
    }
    const double result = red[0];
    __syncthreads();
    return result;
}

// One axis of the half-pixel bilinear resize (OpenCV INTER_LINEAR, clamped at the edges): the
// two source indices of output index `dst` and the weight of the second.
__device__ __forceinline__ void camc_tap(int dst, int from, int to, int* low, int* high, float* t) {
    const float position = (float)(((double)dst + 0.5) * ((double)from / (double)to) - 0.5);
    const float below = floorf(position);
    if (below < 0.0f) { *low = 0; *high = 0; *t = 0.0f; return; }
    const int l = (int)below;
    if (l >= from - 1) { *low = from - 1; *high = from - 1; *t = 0.0f; return; }
    *low = l; *high = l + 1; *t = position - below;
}

// The post-processing of one h x w map by the whole block (docs/run.md), as pytorch-grad-cam's
// scale_cam_image does it: non-finite values set to 0 (counted into *bad), min-max, bilinear
// resize to oh x ow (along w first, then h), min-max again, written to y.
__device__ void camc_scale_image(float* raw, float* y, int* bad, int h, int w, int oh, int ow,
                                 double* red) {
    double count = 0.0, lo = CAMC_INF, hi = -CAMC_INF;
    for (int e = threadIdx.x; e < h * w; e += CAMC_THREADS) {
        float v = raw[e];
        if (!(v - v == 0.0f)) { v = 0.0f; raw[e] = 0.0f; count += 1.0; }
        lo = fmin(lo, (double)v);
        hi = fmax(hi, (double)v);
    }
    count = camc_block_reduce<0>(count, red);
    const float min1 = (float)camc_block_reduce<2>(lo, red);
    const float scale1 = ((float)camc_block_reduce<1>(hi, red) - min1) + 1e-7f;
    if (threadIdx.x == 0 && bad) *bad = (int)count;
    for (int e = threadIdx.x; e < h * w; e += CAMC_THREADS) raw[e] = (raw[e] - min1) / scale1;
    __syncthreads();
    lo = CAMC_INF; hi = -CAMC_INF;
    for (int e = threadIdx.x; e < oh * ow; e += CAMC_THREADS) {
        int y0, y1, x0, x1;
        float ty, tx;
        camc_tap(e / ow, h, oh, &y0, &y1, &ty);
        camc_tap(e % ow, w, ow, &x0, &x1, &tx);
        const float top = raw[y0 * w + x0] * (1.0f - tx) + raw[y0 * w + x1] * tx;
        const float bottom = raw[y1 * w + x0] * (1.0f - tx) + raw[y1 * w + x1] * tx;
        const float v = top * (1.0f - ty) + bottom * ty;
        y[e] = v;
        lo = fmin(lo, (double)v);
        hi = fmax(hi, (double)v);
    }
    const float min2 = (float)camc_block_reduce<2>(lo, red);
    const float scale2 = ((float)camc_block_reduce<1>(hi, red) - min2) + 1e-7f;
    for (int e = threadIdx.x; e < oh * ow; e += CAMC_THREADS) y[e] = (y[e] - min2) / scale2;
    __syncthreads();
}

template <typename T0, typename T1, typename T2>
__device__ __forceinline__ void camc_body(
    const T0* __restrict__ in0, const T1* __restrict__ in1, const T2* __restrict__ in2, float* __restrict__ out, float* __restrict__ scratch, int* __restrict__ bad,
    int n, int c, int k, int d, int h, int w, int out_h, int out_w) {
    __shared__ double camc_red[2 * CAMC_THREADS];
    __shared__ camc_stage_buffer camc_stage_values;
    float* const camc_st = camc_stage_values.v;
    const int C = c, K = k, D = d, H = h, W = w;
    const long long camc_slice = 4*H*W + K + H*W + H*W;
    float* const s = scratch + (long long)blockIdx.x * (camc_slice + (camc_slice & 1));
    double* const acc8 = (double*)(s + 0);
    float* const s6 = s + 0 + 4*H*W;
    float* const s8 = s + 0 + 4*H*W + K;
    float* const map = s + 0 + 4*H*W + K + H*W;
    for (long long img = blockIdx.x; img < n; img += gridDim.x) {
        const T0* const x0 = in0 + img * (K*H*W);
        const T1* const x1 = in1 + img * (K*H*W);
        const T2* const x2 = in2 + img * (K*H*W);
        { // channel blocks: %6, %8 in one pass over in0, in1, in2
            const int camc_per = (H*W) + (H*W) + (H*W);
            const bool camc_staged = camc_per > 0 && camc_per <= CAMC_STAGE;
            const int KC = camc_block_channels(K, camc_per, camc_staged);
            for (int o = threadIdx.x; o < H*W; o += CAMC_THREADS) { acc8[2 * o] = 0.0; acc8[2 * o + 1] = 0.0; }
            for (int k0 = 0; k0 < K; k0 += KC) {
                const int kn = K - k0 < KC ? K - k0 : KC;
                const int st0 = 0;
                const int st1 = st0 + kn * (H*W);
                const int st2 = st1 + kn * (H*W);
                __syncthreads();
                if (camc_staged) {
                camc_stage(x0 + (long long)k0 * (H*W), kn * (H*W), camc_st + st0);
                camc_stage(x1 + (long long)k0 * (H*W), kn * (H*W), camc_st + st1);
                camc_stage(x2 + (long long)k0 * (H*W), kn * (H*W), camc_st + st2);
                __syncthreads();
                }
        { // %6 = mean[h,w](%5): [k,h,w] -> [k]
            const int O = kn, R = H*W, RT = H*W;
            const bool inner = true;
            const camc_split sp = camc_split_for(O, R, inner);
            for (int base = 0; base < O; base += sp.p) {
                const int o = base + sp.slot;
                double a0 = 0.0, a1 = 0.0;
                if (o < O && sp.lane < sp.g) {
                    #pragma unroll 1
                    for (int r = sp.lane; r < R; r += sp.g) {
                        int i_k, i_h, i_w;
                        i_k = o;
                        { int t = r; i_w = t % W; t /= W; i_h = t; }
                        i_k += k0;
                        const float v1 = (camc_staged ? camc_st[st1 + (((i_k - k0)) * H + i_h) * W + i_w] : camc_ld(x1[((i_k) * H + i_h) * W + i_w]));
                        const float v2 = (camc_staged ? camc_st[st2 + (((i_k - k0)) * H + i_h) * W + i_w] : camc_ld(x2[((i_k) * H + i_h) * W + i_w]));
                        const float v3 = 5e-1f;
                        const float v4 = v2 * v3;
                        const float v5 = v1 - v4;
                        a0 += (double)v5;
                    }
                }
                if (inner && sp.g <= 32) {
                    a0 = camc_warp_join<0>(a0, sp.g);
                    if (o < O && sp.lane == 0) { s6[k0 * (1) + o] = (float)(a0 / (double)RT); }
                } else {
                    camc_red[threadIdx.x] = a0;
                    camc_red[CAMC_THREADS + threadIdx.x] = a1;
                    __syncthreads();
                    if (o < O && sp.lane == 0) {
                        for (int m = 1; m < sp.g; ++m) {
                            const int t = camc_member(sp, inner, m);
                            a0 = camc_join<0>(a0, camc_red[t]);
                            a1 += camc_red[CAMC_THREADS + t];
                        }
                        s6[k0 * (1) + o] = (float)(a0 / (double)RT);
                    }
                    __syncthreads();
                }
            }
            __syncthreads();
        }
        { // %8 = sum[k](%7): [k,h,w] -> [h,w]
            const int O = H*W, R = kn, RT = K;
            const bool inner = false;
            const camc_split sp = camc_split_for(O, R, inner);
            for (int base = 0; base < O; base += sp.p) {
                const int o = base + sp.slot;
                double a0 = 0.0, a1 = 0.0;
                if (o < O && sp.lane < sp.g) {
                    #pragma unroll 1
                    for (int r = sp.lane; r < R; r += sp.g) {
                        int i_k, i_h, i_w;
                        { int t = o; i_w = t % W; t /= W; i_h = t; }
                        i_k = r;
                        i_k += k0;
                        const float v0 = (camc_staged ? camc_st[st0 + (((i_k - k0)) * H + i_h) * W + i_w] : camc_ld(x0[((i_k) * H + i_h) * W + i_w]));
                        const float v6 = s6[i_k];
                        const float v7 = v0 * v6;
                        a0 += (double)v7;
                    }
                }
                if (inner && sp.g <= 32) {
                    a0 = camc_warp_join<0>(a0, sp.g);
                    if (o < O && sp.lane == 0) { acc8[2 * o] = camc_join<0>(acc8[2 * o], a0); acc8[2 * o + 1] += a1; }
                } else {
                    camc_red[threadIdx.x] = a0;
                    camc_red[CAMC_THREADS + threadIdx.x] = a1;
                    __syncthreads();
                    if (o < O && sp.lane == 0) {
                        for (int m = 1; m < sp.g; ++m) {
                            const int t = camc_member(sp, inner, m);
                            a0 = camc_join<0>(a0, camc_red[t]);
                            a1 += camc_red[CAMC_THREADS + t];
                        }
                        acc8[2 * o] = camc_join<0>(acc8[2 * o], a0); acc8[2 * o + 1] += a1;
                    }
                    __syncthreads();
                }
            }
            __syncthreads();
        }
            }
            for (int o = threadIdx.x; o < H*W; o += CAMC_THREADS) {
                const int RT = K;
                const double a0 = acc8[2 * o], a1 = acc8[2 * o + 1];
                s8[o] = (float)(a0);
            }
            __syncthreads();
        }
        { // output [h,w]
            float* const y = out_h > 0 ? map : out + img * (H*W);
            for (int e = threadIdx.x; e < H*W; e += CAMC_THREADS) {
                int i_h, i_w;
                { int t = e; i_w = t % W; t /= W; i_h = t; }
                const float v8 = s8[(i_h) * W + i_w];
                const float v9 = (v8 < 0.0f ? 0.0f : v8);
                y[e] = v9;
            }
            if (out_h > 0) {
                __syncthreads();
                camc_scale_image(map, out + img * out_h * (long long)out_w, bad ? bad + img : nullptr, H, W, out_h, out_w, camc_red);
            }
        }
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(CAMC_THREADS, CAMC_MIN_BLOCKS) camc_shapleycam_f32(
    const float* in0, const float* in1, const float* in2, float* out, float* scratch, int* bad, int n, int c, int k, int d, int h, int w, int out_h, int out_w) {
    camc_body<float, float, float>(in0, in1, in2, out, scratch, bad, n, c, k, d, h, w, out_h, out_w);
}

extern "C" __global__ void __launch_bounds__(CAMC_THREADS, CAMC_MIN_BLOCKS) camc_shapleycam_f16(
    const camc_f16* in0, const camc_f16* in1, const camc_f16* in2, float* out, float* scratch, int* bad, int n, int c, int k, int d, int h, int w, int out_h, int out_w) {
    camc_body<camc_f16, camc_f16, camc_f16>(in0, in1, in2, out, scratch, bad, n, c, k, d, h, w, out_h, out_w);
}

extern "C" __global__ void __launch_bounds__(CAMC_THREADS, CAMC_MIN_BLOCKS) camc_shapleycam_bf16(
    const camc_bf16* in0, const camc_bf16* in1, const camc_bf16* in2, float* out, float* scratch, int* bad, int n, int c, int k, int d, int h, int w, int out_h, int out_w) {
    camc_body<camc_bf16, camc_bf16, camc_bf16>(in0, in1, in2, out, scratch, bad, n, c, k, d, h, w, out_h, out_w);
}
