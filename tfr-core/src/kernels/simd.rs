//! Loops compiled once per SIMD level and chosen at run time. The crate is built for the
//! baseline x86-64 (SSE2, 4 lanes, no fused multiply-add) so that it runs everywhere; a hot loop
//! wrapped in [`simd_fn!`] is also compiled for AVX2 with FMA (8 lanes) and for AVX-512 (16
//! lanes), and each call takes the widest build the CPU runs. Matrix products get the same from
//! the `gemm` crate; this is for everything else (convolutions' direct paths, softmax and
//! cross-entropy rows, recurrent cells' gates).

/// The widest instruction set this CPU runs, as far as [`simd_fn!`] distinguishes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Baseline,
    Avx2Fma,
    Avx512,
}

/// This CPU's [`Level`], detected once.
#[inline]
pub(crate) fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma");
    if avx2 && has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq") {
        Level::Avx512
    } else if avx2 {
        Level::Avx2Fma
    } else {
        Level::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Baseline
}

/// Defines `fn $name<$T: $bound>(args) -> ret` (or without a type parameter) whose body is
/// compiled for each [`Level`], the widest one the CPU runs being called. In the body, the
/// const `$F` says whether fused multiply-add is available (use [`madd`]). Hot loops must not
/// live in closures or non-inlined helpers: those keep the baseline build.
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$T:ident: $bound:path, $F:ident>
        ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name<$T: $bound>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<$T: $bound, const $F: bool>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
            unsafe fn wide<$T: $bound>($($arg: $ty),*) $(-> $ret)? {
                body::<$T, true>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<$T: $bound>($($arg: $ty),*) $(-> $ret)? {
                body::<$T, true>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            match $crate::kernels::simd::level() {
                // SAFETY: `wide` only differs from `body` by the target features it is
                // compiled for, and the CPU has every one of them (`level` detected them).
                $crate::kernels::simd::Level::Avx512 => return unsafe { wide::<$T>($($arg),*) },
                // SAFETY: as above, for AVX2 and FMA.
                $crate::kernels::simd::Level::Avx2Fma => return unsafe { avx2::<$T>($($arg),*) },
                $crate::kernels::simd::Level::Baseline => {}
            }
            body::<$T, false>($($arg),*)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident<$F:ident>
        ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<const $F: bool>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
            unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                body::<true>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                body::<true>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            match $crate::kernels::simd::level() {
                // SAFETY: `wide` only differs from `body` by the target features it is
                // compiled for, and the CPU has every one of them (`level` detected them).
                $crate::kernels::simd::Level::Avx512 => return unsafe { wide($($arg),*) },
                // SAFETY: as above, for AVX2 and FMA.
                $crate::kernels::simd::Level::Avx2Fma => return unsafe { avx2($($arg),*) },
                $crate::kernels::simd::Level::Baseline => {}
            }
            body::<false>($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

/// `a * b + c`, as one fused instruction where the caller is compiled with FMA (`FMA`);
/// elsewhere a multiply and an add (a fused multiply-add would be a library call).
#[inline(always)]
pub(crate) fn madd<T: num_traits::Float, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    simd_fn! {
        fn dot<T: num_traits::Float, FMA>(a: &[T], b: &[T]) -> T {
            a.iter().zip(b).fold(T::zero(), |s, (&x, &y)| madd::<T, FMA>(x, y, s))
        }
    }

    simd_fn! {
        fn scale<FMA>(v: &mut [f32], by: f32) {
            v.iter_mut().for_each(|x| *x = madd::<f32, FMA>(*x, by, 0.0));
        }
    }

    #[test]
    fn every_level_computes_the_same_values() {
        let a: Vec<f64> = (0..37).map(f64::from).collect();
        assert_eq!(dot(&a, &a), (0..37).map(|i| f64::from(i * i)).sum::<f64>());
        let mut v = vec![1.5f32; 9];
        scale(&mut v, 2.0);
        assert_eq!(v, vec![3.0; 9]);
        // The level is detected once and is stable.
        assert_eq!(level(), level());
    }
}
