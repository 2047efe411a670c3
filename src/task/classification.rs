//! Sequence classification (`BertForSequenceClassification` and its kin), in the family's
//! shape (`ClassifierKind`): BERT's linear layer on the pooled output, RoBERTa's and ELECTRA's
//! dense + activation + out_proj on the first token, DistilBERT's pre_classifier + ReLU,
//! ModernBERT's prediction head, or DeBERTa's context pooler.
//! The loss is the task's (`TaskKind`), as transformers picks it from `problem_type`:
//! cross-entropy (one class), binary cross-entropy with logits (multi-label), mean squared
//! error (regression); a reranker's one logit by binary cross-entropy, as sentence-transformers'
//! CrossEncoder trains it; class weights (`--class-weights`, `--pos-weight`) are ours.

use tch::nn::Path;
use tch::{Kind, Reduction, Tensor};

use super::{IGNORE_INDEX, TaskKind, TaskModel, Transform, head_linear, prediction_head};
use crate::encoder::ModelConfig;
use crate::encoder::layers::{Activation, Linear, dropout};
use crate::encoder::{ClassifierKind, Dims, Encoder, EncoderOutput, Family, ForwardOptions, Inputs};

/// How a reranker learns (`TaskKind::Rerank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankLoss {
    /// Each (query, passage) pair against its relevance (BinaryCrossEntropyLoss).
    Bce,
    /// Each query's candidates as one list: the cross-entropy between the softmax of their
    /// relevances and that of their logits (ListNetLoss).
    Listnet,
}

pub struct SequenceClassifier {
    pub encoder: Box<dyn Encoder>,
    head: SentenceHead,
    pub kind: TaskKind,
}

/// A head that reads the sequence as one vector: features in the family's shape
/// (`ClassifierKind`), dropout, and the linear layer that gives the logits (sequence
/// classification's labels; multiple choice's one logit per choice).
pub(crate) struct SentenceHead {
    /// What comes before the logits layer.
    features: Features,
    /// The layer that gives the logits (`classifier`, `classifier.out_proj`).
    out: Linear,
    dropout: f64,
}

/// The sentence vector the logits layer reads.
enum Features {
    /// BERT: the pooler's output.
    Pooled,
    /// RoBERTa, ELECTRA: dropout, `dense` and the activation on the first token.
    FirstTokenDense { dense: Linear, activation: Activation },
    /// DistilBERT: `pre_classifier` and ReLU on the first token.
    PreClassifier { dense: Linear },
    /// ModernBERT: its prediction head on the first token or the mean over real tokens.
    PredictionHead { transform: Transform, mean: bool },
    /// DeBERTa: dropout, `pooler.dense` and its activation on the first token.
    ContextPooler { dense: Linear, activation: Activation, dropout: f64 },
    /// ELECTRA's multiple choice: `dense` and the summary's activation on the first token.
    Summary { dense: Linear, activation: Activation },
}

impl TaskModel for SequenceClassifier {
    const ARCHITECTURE: &'static str = "ForSequenceClassification";

    fn pooler(family: &Family) -> bool {
        family.heads.classifier_kind == ClassifierKind::Pooled
    }

    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, config: &ModelConfig) -> Self {
        let head = SentenceHead::new(root, family, dims, family.heads.classifier_kind, config);
        SequenceClassifier { encoder, head, kind: TaskKind::of(config) }
    }
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn encoder_mut(&mut self) -> &mut dyn Encoder {
        self.encoder.as_mut()
    }
    fn head_path(family: &Family) -> Option<&'static str> {
        Some(family.heads.classifier)
    }
}

impl SentenceHead {
    /// The head of shape `kind` under the family's names, with the config's `num_labels`
    /// outputs, initialised as transformers initialises it.
    pub(crate) fn new(root: &Path, family: &Family, dims: &Dims, kind: ClassifierKind, config: &ModelConfig) -> Self {
        let (h, r, labels) = (dims.hidden_size, dims.initializer_range, config.num_labels());
        let head = crate::encoder::layers::path_at(root, family.heads.classifier);
        let dense_at = |name: &str| Linear::new(crate::encoder::layers::path_at(root, name), h, h, r);
        let mut dropout = dims.classifier_dropout;
        let (features, out) = match kind {
            ClassifierKind::Pooled => (Features::Pooled, Linear::new(head, h, labels, r)),
            ClassifierKind::FirstTokenDense { activation } => {
                let dense = Linear::new(head.sub("dense"), h, h, r);
                let out = Linear::new(head.sub("out_proj"), h, labels, r);
                (Features::FirstTokenDense { dense, activation }, out)
            }
            ClassifierKind::PreClassifier { dense } => {
                (Features::PreClassifier { dense: dense_at(dense) }, Linear::new(head, h, labels, r))
            }
            ClassifierKind::PredictionHead { head } => {
                let transform = prediction_head(root, head, dims);
                let std = dims.head.truncated_init.map_or(0.0, |t| t.classifier_std);
                let out = head_linear(root, family.heads.classifier, dims, (h, labels), std, true);
                (Features::PredictionHead { transform, mean: dims.head.mean_pooling }, out)
            }
            ClassifierKind::ContextPooler { dense } => {
                let (activation, p) = (dims.head.pooler_activation, dims.head.pooler_dropout);
                let features = Features::ContextPooler { dense: dense_at(dense), activation, dropout: p };
                (features, Linear::new(head, h, labels, r))
            }
            ClassifierKind::Summary { dense } => {
                let summary = |key: &str| config.json().get(key).cloned();
                let activation = summary("summary_activation").and_then(|a| a.as_str().map(String::from));
                let activation = Activation::parse(activation.as_deref().unwrap_or("gelu")).unwrap_or(Activation::Gelu);
                dropout = summary("summary_last_dropout").and_then(|d| d.as_f64()).unwrap_or(0.1);
                (Features::Summary { dense: dense_at(dense), activation }, Linear::new(head, h, labels, r))
            }
        };
        SentenceHead { features, out, dropout }
    }

    /// Logits `[batch, outputs]` and the encoder output they came from.
    pub(crate) fn forward(
        &self,
        encoder: &dyn Encoder,
        inputs: &Inputs,
        opts: ForwardOptions,
    ) -> (Tensor, EncoderOutput) {
        let out = encoder.forward(inputs, opts);
        let features = match &self.features {
            Features::Pooled => out.pooled.as_ref().expect("built with a pooler").shallow_clone(),
            Features::PredictionHead { transform, mean: true } => {
                let mask = inputs.attention_mask.to_kind(out.last_hidden_state.kind()).unsqueeze(-1);
                let sum = (&out.last_hidden_state * &mask).sum_dim_intlist(1, false, None);
                transform.forward(&(sum / mask.sum_dim_intlist(1, false, None)))
            }
            _ => self.first_token_features(&out.last_hidden_state.select(1, 0), opts.train),
        };
        (self.out.forward(&dropout(&features, self.dropout, opts.train)), out)
    }

    /// The logits alone. Where the head reads only the first token (BERT's pooler reads it
    /// too), the last layer computes that position alone (`Encoder::forward_at`, as MLM does
    /// with its masked positions): its feed-forward and attention output on one row of each
    /// sequence.
    pub(crate) fn logits(&self, encoder: &dyn Encoder, inputs: &Inputs, opts: ForwardOptions) -> Tensor {
        let whole = matches!(self.features, Features::PredictionHead { mean: true, .. });
        if whole || opts.output_hidden_states || opts.output_attentions {
            return self.forward(encoder, inputs, opts).0;
        }
        let positions = Tensor::zeros([inputs.input_ids.size()[0], 1], (Kind::Int64, inputs.input_ids.device()));
        let first = encoder.forward_at(inputs, opts, &positions).squeeze_dim(1);
        let features = match &self.features {
            Features::Pooled => encoder.pool(&first).expect("built with a pooler"),
            _ => self.first_token_features(&first, opts.train),
        };
        self.out.forward(&dropout(&features, self.dropout, opts.train))
    }

    /// What the heads that read the first token make of it (`[batch, hidden]`).
    fn first_token_features(&self, first: &Tensor, train: bool) -> Tensor {
        match &self.features {
            Features::FirstTokenDense { dense, activation } => {
                activation.apply(&dense.forward(&dropout(first, self.dropout, train)))
            }
            Features::PreClassifier { dense } => dense.forward(first).relu(),
            Features::ContextPooler { dense, activation, dropout: p } => {
                activation.apply(&dense.forward(&dropout(first, *p, train)))
            }
            Features::Summary { dense, activation } => activation.apply(&dense.forward(first)),
            Features::PredictionHead { transform, mean: false } => transform.forward(first),
            Features::Pooled | Features::PredictionHead { mean: true, .. } => {
                unreachable!("read by the encoder's pooler, or from every token")
            }
        }
    }
}

impl SequenceClassifier {
    /// Logits `[batch, num_labels]` and the encoder output they came from.
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> (Tensor, EncoderOutput) {
        self.head.forward(self.encoder.as_ref(), inputs, opts)
    }

    /// The logits alone, as training and prediction need them (the last layer at the first
    /// token alone where the head reads nothing else: `SentenceHead::logits`).
    pub fn logits(&self, inputs: &Inputs, opts: ForwardOptions) -> Tensor {
        self.head.logits(self.encoder.as_ref(), inputs, opts)
    }

    /// ListNet's loss of a reranker (sentence-transformers' ListNetLoss): `logits` `[n, 1]`
    /// are the candidates of consecutive queries, `lists` how many each query has, `relevance`
    /// `[n]` their targets; per query the cross-entropy of softmax(relevance) against
    /// log-softmax(logits), averaged over the queries.
    pub fn listwise_loss(logits: &Tensor, relevance: &Tensor, lists: &[i64]) -> Tensor {
        let (logits, relevance) = (logits.to_kind(Kind::Float).view([-1]), relevance.to_kind(Kind::Float));
        let per_query: Vec<Tensor> = logits
            .split_with_sizes(lists, 0)
            .iter()
            .zip(relevance.split_with_sizes(lists, 0))
            .map(|(l, r)| -(r.softmax(0, Kind::Float) * l.log_softmax(0, Kind::Float)).sum(Kind::Float))
            .collect();
        Tensor::stack(&per_query, 0).mean(Kind::Float)
    }

    /// Sets the logits layer's bias (one value a label): a fresh multi-label head starts at
    /// each label's prior log odds instead of 0 (every label at probability 0.5).
    pub fn start_bias_at(&self, bias: &[f32]) {
        let b = self.head.out.bias.as_ref().expect("classifier heads have a bias");
        tch::no_grad(|| b.shallow_clone().copy_(&Tensor::from_slice(bias).to_device(b.device())));
    }

    /// Mean loss over the batch, as transformers computes it for this task. `labels`: class ids
    /// (int64 `[batch]`), 0/1 rows (`[batch, labels]`) or scores (`[batch]`). `weights`: per
    /// class (cross-entropy) or per label positive weights (multi-label).
    pub fn loss(&self, logits: &Tensor, labels: &Tensor, weights: Option<&Tensor>) -> Tensor {
        let logits = logits.to_kind(Kind::Float);
        match self.kind {
            TaskKind::Regression if logits.size()[1] == 1 => {
                logits.squeeze_dim(-1).mse_loss(&labels.to_kind(Kind::Float), Reduction::Mean)
            }
            TaskKind::Regression => logits.mse_loss(&labels.to_kind(Kind::Float), Reduction::Mean),
            // sentence-transformers' BinaryCrossEntropyLoss: one logit per pair.
            TaskKind::Rerank => logits.squeeze_dim(-1).binary_cross_entropy_with_logits::<&Tensor>(
                &labels.to_kind(Kind::Float),
                None,
                None,
                Reduction::Mean,
            ),
            TaskKind::MultiLabel => logits.binary_cross_entropy_with_logits::<&Tensor>(
                &labels.to_kind(Kind::Float),
                None,
                weights,
                Reduction::Mean,
            ),
            TaskKind::Classification | TaskKind::TokenClassification => {
                logits.cross_entropy_loss(labels, weights, Reduction::Mean, IGNORE_INDEX, 0.0)
            }
            TaskKind::Embedding | TaskKind::QuestionAnswering | TaskKind::MultipleChoice => {
                unreachable!(
                    "a classifier's head is never of the embedding, question-answering or multiple-choice task"
                )
            }
        }
    }
}
