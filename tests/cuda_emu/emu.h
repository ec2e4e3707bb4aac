// A CPU stand-in for the few CUDA features camc's kernels use, so that tests/cuda.rs can run the
// generated CUDA C with g++ on a machine without a GPU. A block's threads (as many as the kernel
// was written for, up to 1024) are coroutines
// (ucontext) on one OS thread, one block at a time: each runs until its next __syncthreads(),
// then the next one does; __shared__ variables are statics; a warp shuffle goes through a
// block-wide buffer (camc's kernels only shuffle where the whole block does). It checks the
// kernels' arithmetic, indexing and barrier placement (a value read before the barrier that
// publishes it is read stale), not the GPU's memory model or performance.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <math.h>
#include <ucontext.h>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static

struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
inline emu_dim3 threadIdx, blockIdx, gridDim, blockDim;
inline constexpr int EMU_THREADS = 1024;  // the most CAMC_THREADS a kernel may have
inline constexpr size_t EMU_STACK = 256 * 1024;
inline double emu_shuffle[EMU_THREADS];
inline ucontext_t emu_scheduler, emu_threads[EMU_THREADS];
inline bool emu_finished[EMU_THREADS];
inline std::function<void()> emu_kernel;

// Back to the scheduler, which resumes this thread after every other one reached the barrier.
inline void __syncthreads() { swapcontext(&emu_threads[threadIdx.x], &emu_scheduler); }

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

inline void emu_thread_main() {
    emu_kernel();
    emu_finished[threadIdx.x] = true;
}

// Runs `kernel` as `grid` blocks of `threads` threads (the kernel's CAMC_THREADS).
// One set of stacks for every launch (a `static` inside the template would be one per kernel).
inline std::vector<char> emu_stacks(EMU_THREADS * EMU_STACK);

template <typename F> void emu_launch(unsigned grid, int threads, F kernel) {
    std::vector<char>& stacks = emu_stacks;
    emu_kernel = kernel;
    gridDim.x = grid;
    blockDim.x = threads;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        for (int t = 0; t < threads; ++t) {
            getcontext(&emu_threads[t]);
            emu_threads[t].uc_stack.ss_sp = stacks.data() + t * EMU_STACK;
            emu_threads[t].uc_stack.ss_size = EMU_STACK;
            emu_threads[t].uc_link = &emu_scheduler;
            makecontext(&emu_threads[t], emu_thread_main, 0);
            emu_finished[t] = false;
        }
        for (bool running = true; running;) {
            running = false;
            for (int t = 0; t < threads; ++t) {
                if (emu_finished[t]) continue;
                threadIdx.x = t;
                swapcontext(&emu_scheduler, &emu_threads[t]);
                running = true;
            }
        }
    }
}
