"""`pefomed prepare SOURCE --format NAME --out DATA_DIR`."""

from __future__ import annotations


import typer

from pefomed.cli import declared

EXAMPLE = """
Example:

  pefomed prepare data/VQA_RAD --format data-rad --out prepared/vqa-rad

  pefomed prepare data/Slake1.0 --format slake --language en --out prepared/slake

  pefomed prepare data/VQA_RAD --format data-rad --out prepared/vqa-rad --overwrite   # replace it

  pefomed prepare ct_questions.jsonl --format jsonl --series-frames 3 --out prepared/ct   # image: ct/vol.nii.gz
"""


def register(app: typer.Typer) -> None:
    from pefomed.options.prepare import PrepareCommand

    def prepare(command: PrepareCommand):
        from pefomed.data.prepare import prepare as run_prepare
        from pefomed.data.summary import print_summary

        manifest = run_prepare(command.source, command.format, command.out, command.reader_options(),
                               command.image_options, overwrite=command.overwrite)
        print_summary(manifest, command.out)

    declared.register(app, "prepare", PrepareCommand, prepare,
                      help="Read a dataset exactly as it ships and write DATA_DIR (manifest.json + split files + "
                           "images)." + EXAMPLE)
