//! Sentence embeddings from code: which sentence is closest to a query, by cosine similarity.
//!
//! `cargo run --release --example embed -- [MODEL]`: MODEL defaults to the test fixture
//! tiny-bert (random: the ranking means nothing); `.models/all-MiniLM-L6-v2` gives real ones.

use bertkit::predict::{Embedder, Pooling};
use bertkit::pretrained::{LoadOptions, ModelDir};

fn main() -> anyhow::Result<()> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/tiny-bert".into());
    let query = "Who may end this agreement?";
    let passages = [
        "Either party may terminate this Agreement upon thirty days' written notice.",
        "This Agreement shall be governed by the laws of the State of New York.",
        "The Supplier shall deliver the goods to the Customer's warehouse.",
    ];

    // As the checkpoint's sentence-transformers files say (MiniLM: mean pooling, normalised),
    // else the mean; unit vectors either way, so a dot product is the cosine.
    let model = ModelDir::open(&model)?;
    let embedder = Embedder::load_as_saved(&model, None, Pooling::Mean, &LoadOptions::default())?.normalized(true);
    let mut texts = vec![query];
    texts.extend(passages);
    let vectors = embedder.embed(&texts)?.vectors;
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut ranked: Vec<(f32, &str)> =
        passages.iter().zip(&vectors[1..]).map(|(p, v)| (cosine(&vectors[0], v), *p)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("{query}  ({} dimensions)", embedder.dim());
    for (score, passage) in ranked {
        println!("  {score:.3}  {passage}");
    }
    Ok(())
}
