//! The gradient reduction over ranks (`wgpt::dist`) on in-process peers: every rank ends with the
//! left fold of all ranks' vectors in rank order, bit for bit, at 1, 2, 3 and 5 ranks and on
//! lengths that the rank count does not divide (or that are shorter than it).

use rand::{Rng, SeedableRng};
use wgpt::dist::{reduce::shard, sum_in_rank_order, Comm, Solo, Threads};

/// Vectors whose sums depend on the order they are added in: magnitudes from 1e-4 to 1e4.
fn vectors(ranks: usize, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..ranks)
        .map(|_| (0..n).map(|_| r.random_range(-1.0f32..1.0) * 10f32.powi(r.random_range(-4..=4))).collect())
        .collect()
}

fn left_fold(vs: &[Vec<f32>]) -> Vec<f32> {
    let mut sum = vs[0].clone();
    for v in &vs[1..] {
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x;
        }
    }
    sum
}

/// Runs the reduction on `vs.len()` thread peers; returns every rank's result.
fn reduce_on_threads(vs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let job = Threads::job(vs.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = job
            .into_iter()
            .zip(vs.iter().cloned())
            .map(|(comm, mut v)| {
                s.spawn(move || {
                    sum_in_rank_order(&comm, &mut v).unwrap();
                    v
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn threads_sum_in_rank_order() {
    for ranks in [1, 2, 3, 5] {
        for n in [0, 1, 3, 4, 7, 1000, 1001] {
            let vs = vectors(ranks, n, (ranks * 10_000 + n) as u64);
            let want = bits(&left_fold(&vs));
            for (rank, got) in reduce_on_threads(&vs).iter().enumerate() {
                assert_eq!(bits(got), want, "rank {rank} of {ranks}, n = {n}");
            }
        }
    }
}

#[test]
fn the_order_of_the_sum_shows_in_its_bits() {
    // The test above could not tell rank order from any other if these sums did not depend on it.
    let vs = vectors(5, 1000, 7);
    let reversed: Vec<Vec<f32>> = vs.iter().rev().cloned().collect();
    let (fwd, rev) = (bits(&left_fold(&vs)), bits(&left_fold(&reversed)));
    let differ = fwd.iter().zip(&rev).filter(|(a, b)| a != b).count();
    assert!(differ > 50, "only {differ} of 1000 sums depend on the order");
}

#[test]
fn shards_cover_the_vector_once() {
    for ranks in [1, 2, 3, 5, 8] {
        for n in [0, 1, 7, 8, 1001] {
            let ends: Vec<_> = (0..ranks).map(|j| shard(n, ranks, j)).collect();
            assert_eq!(ends[0].start, 0);
            assert_eq!(ends[ranks - 1].end, n);
            assert!(ends.windows(2).all(|w| w[0].end == w[1].start), "{ranks} ranks, n = {n}: {ends:?}");
        }
    }
}

#[test]
fn solo_leaves_the_vector_as_it_is() {
    let mut v = vec![1.5f32, -2.0, 3.25];
    sum_in_rank_order(&Solo, &mut v).unwrap();
    assert_eq!(v, [1.5, -2.0, 3.25]);
    assert_eq!((Solo.rank(), Solo.size()), (0, 1));
}

#[test]
fn ranks_that_disagree_on_the_length_get_an_error() {
    let job = Threads::job(2);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = job
            .into_iter()
            .enumerate()
            .map(|(r, comm)| {
                s.spawn(move || {
                    let mut v = vec![1.0f32; 10 + r];
                    sum_in_rank_order(&comm, &mut v).map_err(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().any(|r| r.as_ref().is_err_and(|e| e.contains("disagree on the model"))), "{results:?}");
}

#[test]
fn skipping_draws_lands_where_drawing_them_does() {
    // A rank skips the other ranks' micro-batches (`Rng::skip`) instead of drawing them.
    use wgpt::data::batches::Rng;
    for n in [0u64, 1, 17, 1000] {
        let (mut drawn, mut skipped) = (Rng(5), Rng(5));
        for _ in 0..n {
            drawn.next_u64();
        }
        skipped.skip(n);
        assert_eq!(drawn, skipped, "after {n} draws");
        assert_eq!(drawn.next_u64(), skipped.next_u64());
    }
}

// A peer that leaves the job early (its thread returned or panicked) fails the others' next
// collective instead of leaving them waiting for ever.
#[test]
fn a_peer_that_left_fails_the_collective() {
    let mut job = Threads::job(2);
    let survivor = job.remove(0);
    let gone = job.remove(0);
    let waiting = std::thread::spawn(move || survivor.all_gather(vec![1.0]).map(|_| ()));
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(gone);
    let e = waiting.join().unwrap().unwrap_err().to_string();
    assert!(e.contains("a peer left the job"), "{e}");
}
