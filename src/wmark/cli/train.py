"""``wmark train lm | image | classifier``: train the models whose weights ship in the package (defaults reproduce them)."""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the models whose weights ship in the package")
    tsub = p.add_subparsers(dest="what", metavar="WHAT")
    _lm_parser(tsub)
    _image_parser(tsub)
    _classifier_parser(tsub)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _command_line() -> str | None:
    return " ".join(["wmark", *sys.argv[1:]]) if sys.argv else None


def _lm_parser(tsub: argparse._SubParsersAction) -> None:
    p = tsub.add_parser("lm", help="train the built-in tiny LM (tokenizer + model) from a seed")
    p.add_argument("--out", required=True, help="output folder (weights, tokenizer, card, SHA256SUMS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=600, help="optimizer steps (sets the LR schedule)")
    p.add_argument("--minutes", type=float, default=20.0, help="wall-clock cap; stops early if reached")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=192)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=6)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--data", default=None, help="folder with the corpus texts (default ../shared/data/text)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_lm)


def _train_lm(args: argparse.Namespace) -> int:
    from wmark.assets import folder_lock
    from wmark.lm.train import train_lm

    with folder_lock(args.out, "train lm"):
        res = train_lm(
            out=args.out, seed=args.seed, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
            seq_len=args.seq_len, lr=args.lr, vocab_size=args.vocab_size, d_model=args.d_model,
            n_layer=args.n_layer, n_head=args.n_head, context=args.context, data=args.data,
            resume=not args.no_resume, threads=args.threads, command=_command_line(), progress=not args.no_progress,
        )
    print(f"wrote {res.out_dir}: {res.steps_done}/{res.steps} steps, val ppl {res.val_ppl:.2f}, "
          f"{res.train_seconds / 60:.1f} min")
    return 0


def _image_parser(tsub: argparse._SubParsersAction) -> None:
    from wmark.image.train import DEFAULT_BATCH, DEFAULT_RECIPE, DEFAULT_THREADS, RECIPES

    p = tsub.add_parser("image", help="train the image watermark encoder/decoder (defaults reproduce the shipped weights)")
    p.add_argument("--out", required=True, help="output folder (weights, card, checkpoint; resumes from DIR/ckpt.pt)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES),
                   help=f"stage table (default {DEFAULT_RECIPE}: " +
                        ", ".join(f"schedule of {a} steps up to step {b}" for a, b in RECIPES[DEFAULT_RECIPE]) + ")")
    p.add_argument("--steps", type=int, default=None, help="one stage of N steps instead of the recipe")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--crop", type=int, default=256, help="training crop size in pixels")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--minutes", type=float, default=None, help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--data", default=None, help="training images folder (default ../shared/data/train)")
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch CPU threads (default {DEFAULT_THREADS}, as for the shipped weights: results "
                        "depend on it in the last bits)")
    p.add_argument("--device", default=None)
    p.add_argument("--finetune-decoder", default=None, metavar="WEIGHTS",
                   help="start from these weights (.pt file or shipped name), keep the encoder "
                        "(the embedded marks stay identical) and train only the decoder")
    p.add_argument("--heavy", action="store_true",
                   help="harder attack mix: adds a blur -> noise -> JPEG degradation chain, noise to 0.12")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_image)


def _train_image(args: argparse.Namespace) -> int:
    from wmark.assets import folder_lock
    from wmark.image.train import train

    with folder_lock(args.out, "train image"):
        train(out=args.out, seed=args.seed, recipe=args.recipe, steps=args.steps, batch=args.batch,
              crop=args.crop, lr=args.lr, minutes=args.minutes, data=args.data, ckpt_every=args.ckpt_every,
              threads=args.threads, device=args.device, finetune_decoder=args.finetune_decoder, heavy=args.heavy,
              progress=not args.no_progress)
    return 0


def _classifier_parser(tsub: argparse._SubParsersAction) -> None:
    p = tsub.add_parser("classifier", help="train the MNIST LeNet the image loop's metrics use")
    p.add_argument("--out", required=True, help="folder to write mnist_lenet.pt and .sha256 into")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_classifier)


def _train_classifier(args: argparse.Namespace) -> int:
    import torch

    from wmark.assets import folder_lock
    from wmark.loop.image_metrics import CLASSIFIER_NAME, save_classifier, train_classifier
    from wmark.loop.mnist import EVAL_RANGE, TRAIN_RANGE, load_mnist

    x, y = load_mnist()
    (a, b), (c, d) = TRAIN_RANGE, EVAL_RANGE
    net = train_classifier(x[a:b], y[a:b], epochs=args.epochs, seed=args.seed)
    with torch.no_grad():
        acc = float((net(x[c:d]).argmax(1).numpy() == y[c:d]).mean())
    with folder_lock(args.out, "train classifier"):
        digest = save_classifier(net, args.out)
    print(f"held-out accuracy {acc:.4f} ({d - c} digits); wrote {args.out}/{CLASSIFIER_NAME}.pt sha256 {digest}")
    return 0
