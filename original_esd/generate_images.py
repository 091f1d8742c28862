r"""Generate images from a prompt CSV, with or without an erasure file; resumable and multi-process.

    python original_esd/generate_images.py --prompts_path prompts/toy_vangogh.csv \
        --erasure models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors --num_samples 2
    accelerate launch --num_processes 4 original_esd/generate_images.py --prompts_path ... --device cuda

Images go to {output}/{model_name}/{case_number}_{i}.png (--save_path, the reference ESD repo's
name, is accepted for --output). Row r's images come from one latent
batch drawn with its evaluation_seed (image i = slice i), so a missing image is regenerated
exactly and existing ones are skipped. A folder's manifest names its model (base UNet fingerprint,
erasure file hash) and sampling; a folder of another model's images is refused, never reused.
Under `accelerate launch` the rows are split between the processes; the main process alone writes
the manifest.
"""
import json
import os

import torch
from accelerate.utils import gather_object
from tqdm import tqdm

from spatial_erasure import cli
from spatial_erasure.distributed import process_device, process_state
from spatial_erasure.erasure_file import apply_erasure, file_hash, read_erasure
from spatial_erasure.errors import InputError
from spatial_erasure.families import denoiser_of, family_of
from spatial_erasure.models import describe, fingerprint, load_pipeline
from spatial_erasure.prompts import read_prompt_csv
from spatial_erasure.reports import save_png, write_json
from spatial_erasure.sampling import to_uint8
from spatial_erasure.trainer import resolution


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--prompts_path", required=True,
      help="CSV with case_number, prompt, evaluation_seed [, negative_prompt, guidance_scale]")
    a("--erasure", default=None, help="erasure .safetensors to apply (default: none, the base model)")
    a("--allow_unverified", action="store_true",
      help="apply an erasure file that records no base_fingerprint (nothing says which model it was trained on)")
    a("--model_name", default=None, help="subfolder name (default: the erasure file's stem, or 'base')")
    a("--num_samples", type=int, default=1, help="images per row")
    a("--resolution", type=int, default=None, help="image size (default: the model's native size)")
    cli.add_common_args(p, "results/images", "output root folder", guidance_help="CFG scale unless the row sets one",
                        save_path_alias=True)
    args = p.parse_args(argv)
    cli.require_positive(vars(args), "num_samples", "num_inference_steps")
    cli.check_output(args.output, folder=True)
    return args


def check_folder_key(out_dir, manifest, key):
    """InputError unless `out_dir` is new or holds images of the model and sampling `key` (its manifest's
    model_key): a folder of another model's images, or of unknown origin, is never reused."""
    pngs = os.path.isdir(out_dir) and any(f.endswith(".png") for f in os.listdir(out_dir))
    if os.path.exists(manifest):
        with open(manifest) as f:
            theirs = json.load(f).get("model_key")
    elif not pngs:
        return
    else:
        theirs = None
    if theirs != key:
        what = "of unknown origin" if theirs is None else "of another model or sampling (" + ", ".join(
            f"{k} {theirs.get(k)} there, {v} here" for k, v in key.items() if theirs.get(k) != v) + ")"
        raise InputError(f"{out_dir} holds images {what}; pass another --model_name or --output, or delete the "
                         "folder")


@cli.reports_errors
def main(args):
    state = process_state()
    device = process_device(args.device)
    rows = read_prompt_csv(args.prompts_path)
    if args.erasure:
        read_erasure(args.erasure)                 # a bad file fails now, in one line, not after loading
    pipe = load_pipeline(args.base_model, device=device)
    name = args.model_name or (os.path.basename(args.erasure).removesuffix(".safetensors") if args.erasure else "base")
    family, denoiser = family_of(pipe), denoiser_of(pipe)
    base_fp = fingerprint(denoiser)
    if args.erasure:
        apply_erasure(pipe, args.erasure, allow_unverified=args.allow_unverified)
    if state.is_main_process:
        print(describe(pipe, base_fp) + (f" + {args.erasure}" if args.erasure else ""))
    out_dir = os.path.join(args.output, name)
    res, shape = resolution(pipe, args.resolution)
    # the images of a folder are those of one model and sampling: never reuse another's
    key = {"base_fingerprint": base_fp, "erasure_hash": file_hash(args.erasure) if args.erasure else None,
           "num_inference_steps": args.num_inference_steps, "guidance_scale": args.guidance_scale, "resolution": res}
    manifest = os.path.join(out_dir, "manifest.json")
    check_folder_key(out_dir, manifest, key)
    if state.is_main_process and not os.path.exists(manifest):
        write_json(manifest, {"model_key": key, "base_model": args.base_model, "erasure": args.erasure})
    state.wait_for_everyone()

    done = []
    with state.split_between_processes(rows) as mine:
        for row in tqdm(mine, desc=f"generating [{state.process_index}]", disable=len(mine) < 2):
            paths = [os.path.join(out_dir, f"{row['case_number']}_{i}.png") for i in range(args.num_samples)]
            todo = [i for i, p in enumerate(paths) if not os.path.exists(p)]
            if not todo:
                continue
            g = torch.Generator("cpu").manual_seed(row["evaluation_seed"])
            latents = torch.randn((args.num_samples,) + shape, generator=g)[todo].to(device, denoiser.dtype)
            images = pipe([row["prompt"]] * len(todo), negative_prompt=[row.get("negative_prompt", "")] * len(todo),
                          latents=family.pipeline_latents(latents), num_inference_steps=args.num_inference_steps,
                          height=res, width=res,
                          guidance_scale=row.get("guidance_scale", args.guidance_scale), output_type="np",
                          **family.call_kwargs(pipe)).images
            for i, img in zip(todo, to_uint8(images)):
                save_png(img, paths[i])
                done.append({"case_number": row["case_number"], "image": i, "process": state.process_index})
    done = gather_object(done) if state.num_processes > 1 else done
    if state.is_main_process:
        write_json(manifest,
                   {"model_key": key, "base_model": args.base_model, "erasure": args.erasure,
                    "prompts_path": args.prompts_path,
                    "num_samples": args.num_samples, "num_inference_steps": args.num_inference_steps,
                    "processes": state.num_processes, "generated_now": done})
        print(f"{len(done)} images generated, {len(rows) * args.num_samples - len(done)} already present, in {out_dir}")
    state.wait_for_everyone()


if __name__ == "__main__":
    main(parse_args())
