"""Sentiment of padded reviews: Embedding(mask_zero) + bidirectional LSTM (Keras -> fastrnn).

The Keras IMDB tutorial in miniature: reviews are sequences of word ids padded with 0 to one
length, Embedding(mask_zero=True) tells the recurrent layer to skip the padding, and
Bidirectional(LSTM(16)) -> Dense(1, sigmoid) gives P(positive).  The reviews are synthetic
(seeded): filler words, positive and negative words, and "not", which flips the next word.
fastrnn.from_keras converts the live model and honours the mask: a padded batch gives Keras's
numbers, and so does predict(x, lengths=...) on the same ids.  The PNG reads two reviews word by
word (P(positive) of each prefix, one batch with lengths 1..n) and shows the speed side by side.

    python examples/sentiment_bilstm.py [--quick] [--out DIR] [--threads N]
"""
from __future__ import annotations

import numpy as np

import _common as C

import fastrnn

POSITIVE = "good great love excellent fun wonderful best enjoyed brilliant moving".split()
NEGATIVE = "bad awful boring hate worst poor dull waste terrible weak".split()
FILLER = ("the movie film plot actor was is a and story it this scene music ending cast "
          "script director with of very really quite but").split()
WORDS = ["<pad>", "not"] + POSITIVE + NEGATIVE + FILLER  # id 0 is the padding
ID = {w: i for i, w in enumerate(WORDS)}
MAXLEN, EMBED, UNITS = 32, 16, 16


def review(rng):
    """A random review (list of words) and its label: the sum of its opinions, 'not' flipping the next."""
    words, score = [], 0
    for _ in range(rng.integers(2, 5)):  # opinions
        words += list(rng.choice(FILLER, rng.integers(1, 5)))
        neg = rng.random() < 0.3
        pos = rng.random() < 0.5
        if neg:
            words.append("not")
        words.append(str(rng.choice(POSITIVE if pos else NEGATIVE)))
        score += (1 if pos else -1) * (-1 if neg else 1)
    words = words[:MAXLEN]
    if score == 0:  # break ties with one more opinion word at the end
        pos = rng.random() < 0.5
        words = words[:MAXLEN - 1] + [str(rng.choice(POSITIVE if pos else NEGATIVE))]
        score = 1 if pos else -1
    return words, int(score > 0)


def encode(reviews):
    """Ids padded with 0 after the words (Keras pad_sequences(padding="post")), and the lengths."""
    x = np.zeros((len(reviews), MAXLEN), np.int64)
    for i, words in enumerate(reviews):
        x[i, :len(words)] = [ID[w] for w in words]
    return x, np.array([len(w) for w in reviews])


def dataset(n, rng):
    pairs = [review(rng) for _ in range(n)]
    x, lengths = encode([w for w, _ in pairs])
    return x, lengths, np.array([y for _, y in pairs], np.float32)


def prefixes(ids_row, n):
    """The first 1..n words of one review as a padded batch (what was read so far) and their lengths."""
    x = np.tile(ids_row, (n, 1))
    x[np.arange(MAXLEN)[None, :] >= np.arange(1, n + 1)[:, None]] = 0
    return x, np.arange(1, n + 1)


def main():
    args = C.parse_args(__doc__)
    keras = C.setup(args, "keras")
    rng = np.random.default_rng(args.seed)
    x_train, _, y_train = dataset(1000 if args.quick else 8000, rng)
    x_test, len_test, y_test = dataset(256, rng)
    model = keras.Sequential([
        keras.Input((MAXLEN,), dtype="int32"),
        keras.layers.Embedding(len(WORDS), EMBED, mask_zero=True),
        keras.layers.Bidirectional(keras.layers.LSTM(UNITS)),
        keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    epochs = 6 if args.quick else 12
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)

    fast = fastrnn.from_keras(model)
    ref = model.predict_on_batch(x_test)
    probs = fast.predict(x_test)  # the mask comes from the padding ids, as in Keras
    C.parity(f"P(positive) of {len(x_test)} padded reviews (mask_zero)", probs, ref, "keras")
    C.parity("the same reviews with lengths= instead of the mask", fast.predict(x_test, lengths=len_test), ref, "keras")
    acc = float(np.mean((probs[:, 0] > 0.5) == y_test))
    print(f"Embedding({len(WORDS)}, {EMBED}, mask_zero) -> Bidirectional(LSTM({UNITS})) -> Dense(1, sigmoid), "
          f"{epochs} epochs on {len(x_train)} reviews: test accuracy {acc:.1%} (fastrnn)")

    examples = ["the movie was not good but the music was wonderful and the cast brilliant".split(),
                "a great cast but the story is boring the script dull and the ending awful".split()]
    traces = []
    for words in examples:
        ids, _ = encode([words])
        x, lengths = prefixes(ids[0], len(words))
        trace = fast.predict(x, lengths=lengths)[:, 0]
        C.parity(f"word-by-word trace of '{' '.join(words[:4])} ...'", trace, model.predict_on_batch(x)[:, 0], "keras")
        traces.append((words, trace))

    one = x_test[:1]
    t_one = C.time_side_by_side(f"one review, batch 1 x {MAXLEN}", {
        "fastrnn predict (1 review)": lambda: fast.predict(one),
        "keras predict_on_batch (1 review)": lambda: model.predict_on_batch(one)}, args.quick)
    t_all = C.time_side_by_side(f"batch {len(x_test)} x {MAXLEN}", {
        f"fastrnn predict ({len(x_test)})": lambda: fast.predict(x_test),
        f"keras predict_on_batch ({len(x_test)})": lambda: model.predict_on_batch(x_test),
        f"keras model.predict ({len(x_test)})": lambda: model.predict(x_test, verbose=0)}, args.quick)

    fig, axes = C.figure(ncols=1, nrows=3, width=11, height=3.0)
    for ax, (words, trace) in zip(axes, traces):
        steps = np.arange(1, len(words) + 1)
        ax.bar(steps, trace - 0.5, bottom=0.5, color=["tab:green" if p > 0.5 else "tab:red" for p in trace])
        ax.axhline(0.5, color="black", lw=0.6)
        ax.set_xticks(steps, words, rotation=30, fontsize=8)
        for s, w in zip(steps, words):
            if w in POSITIVE or w in NEGATIVE or w == "not":
                ax.get_xticklabels()[s - 1].set_fontweight("bold")
        ax.set_ylim(0, 1)
        ax.set_ylabel("P(positive)")
        ax.set_title("P(positive) after each word (fastrnn, one batch of prefixes with lengths=1..n); "
                     f"final {trace[-1]:.2f}", fontsize=9)
    C.speed_bars(axes[2], [t_one, t_all], f"Embedding + BiLSTM({UNITS}) sentiment, padded to {MAXLEN}", args)
    C.save(fig, args, "sentiment_bilstm.png")


if __name__ == "__main__":
    main()
