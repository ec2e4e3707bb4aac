// A CPU stand-in for the few CUDA features camc's kernels use, so that tests/cuda.rs can run the
// generated CUDA C with g++ on a machine without a GPU: each block runs as 256 OS threads, one
// block at a time; __syncthreads() is a barrier; __shared__ variables are statics (one block
// runs at a time); a warp shuffle goes through a block-wide buffer (camc's kernels only shuffle
// where the whole block does). It checks the kernels' arithmetic, indexing and synchronization
// logic, not the GPU's memory model or performance.
#pragma once
#include <barrier>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(x)
#define __shared__ static
// The f16 load's PTX cannot run here; the emulated tests use f32 inputs only.
#define asm(...) (void)0

struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
inline thread_local emu_dim3 threadIdx;
inline emu_dim3 blockIdx, gridDim, blockDim;
inline constexpr int EMU_THREADS = 256;
inline std::barrier<> emu_barrier(EMU_THREADS);
inline double emu_shuffle[EMU_THREADS];

inline void __syncthreads() { emu_barrier.arrive_and_wait(); }

inline double __shfl_xor_sync(unsigned, double v, int offset) {
    emu_shuffle[threadIdx.x] = v;
    __syncthreads();
    const double other = emu_shuffle[threadIdx.x ^ offset];
    __syncthreads();
    return other;
}

template <typename To, typename From> inline To emu_bits(From from) {
    To to;
    std::memcpy(&to, &from, sizeof to);
    return to;
}
inline float __int_as_float(int x) { return emu_bits<float>(x); }
inline float __uint_as_float(unsigned x) { return emu_bits<float>(x); }
inline double __longlong_as_double(long long x) { return emu_bits<double>(x); }

// Runs `kernel` as `grid` blocks of EMU_THREADS threads.
template <typename F> void emu_launch(unsigned grid, F kernel) {
    gridDim.x = grid;
    blockDim.x = EMU_THREADS;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        std::vector<std::thread> threads;
        for (int t = 0; t < EMU_THREADS; ++t) {
            threads.emplace_back([&kernel, t] {
                threadIdx.x = t;
                kernel();
            });
        }
        for (auto& thread : threads) thread.join();
    }
}
