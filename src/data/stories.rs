//! The built-in corpus: short stories generated from a small grammar, so `wgpt train` has text
//! without a download. Each story draws a few names, objects and places and repeats them, so a
//! model that learns to copy what it saw earlier in the context (induction) predicts much of it.

use super::batches::Rng;

const NAMES: &[&str] = &[
    "Ada", "Ben", "Cleo", "Dov", "Ema", "Finn", "Gus", "Hana", "Ivo", "Juno", "Kai", "Lena", "Milo", "Nia", "Otto",
    "Pia", "Quin", "Rosa", "Sami", "Tess", "Uma", "Vito", "Wren", "Yara",
];
const OBJECTS: &[&str] = &[
    "kite", "drum", "lamp", "boat", "key", "map", "hat", "ball", "book", "cup", "bell", "coin", "shell", "rope", "box",
    "flute", "sock", "ring", "pear", "stone",
];
const ADJS: &[&str] =
    &["red", "blue", "old", "small", "big", "shiny", "green", "tiny", "soft", "broken", "new", "golden"];
const PLACES: &[&str] =
    &["park", "river", "market", "garden", "school", "forest", "beach", "library", "hill", "harbor", "farm", "bridge"];
const FEELINGS: &[&str] = &["happy", "glad", "proud", "calm", "excited", "grateful"];

fn pick<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list[rng.below(list.len() as u64) as usize]
}

/// Two different entries of `list`.
fn two<'a>(rng: &mut Rng, list: &[&'a str]) -> (&'a str, &'a str) {
    let a = rng.below(list.len() as u64) as usize;
    let b = (a + 1 + rng.below(list.len() as u64 - 1) as usize) % list.len();
    (list[a], list[b])
}

/// One story of four to seven sentences.
pub fn story(rng: &mut Rng) -> String {
    let (a, b) = two(rng, NAMES);
    let (obj, obj2) = two(rng, OBJECTS);
    let (adj, place, feel) = (pick(rng, ADJS), pick(rng, PLACES), pick(rng, FEELINGS));
    let mut s = match rng.below(3) {
        0 => format!("{a} had a {adj} {obj}. "),
        1 => format!("Once upon a time, {a} found a {adj} {obj} near the {place}. "),
        _ => format!("{a} and {b} lived near the {place}. {a} had a {adj} {obj}. "),
    };
    s += &format!("One day {a} went to the {place} with the {obj}. ");
    s += &match rng.below(3) {
        0 => format!("At the {place}, {a} met {b}. {b} said, \"I like your {obj}, {a}.\" "),
        1 => format!("There {a} saw {b}, who had lost a {obj2}. "),
        _ => format!("{b} was at the {place} too, looking for a {obj}. "),
    };
    s += &match rng.below(2) {
        0 => format!("{a} gave the {adj} {obj} to {b}. {b} was {feel}. "),
        _ => format!("{a} and {b} played with the {obj} until the sun went down. "),
    };
    if rng.below(2) == 0 {
        s += &format!("The next day, {b} brought a {obj2} for {a}. ");
    }
    s += &format!("Then {a} went home, and {b} stayed at the {place}.\n\n");
    s
}

/// Stories from `seed` until the text holds at least `bytes` bytes.
pub fn corpus(seed: u64, bytes: usize) -> String {
    let mut rng = Rng(seed);
    let mut text = String::with_capacity(bytes + 512);
    while text.len() < bytes {
        text += &story(&mut rng);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn corpus_is_deterministic_and_repeats_its_names() {
        let a = super::corpus(7, 20_000);
        assert_eq!(a, super::corpus(7, 20_000));
        assert_ne!(a, super::corpus(8, 20_000));
        let first = a.split("\n\n").next().unwrap();
        let name = first.split_whitespace().next().unwrap().trim_end_matches(',');
        let name = if name == "Once" { first.split(", ").nth(1).unwrap().split(' ').next().unwrap() } else { name };
        assert!(first.matches(name).count() >= 3, "a story mentions its hero several times: {first}");
    }
}
