"""Evaluation: the library behind evaluation/*.py and the toy model's quality checks.

metrics                 judges (toy classifier, CLIP zero-shot), UA / retain accuracy, PSNR, Frechet distance,
                        resumable cached generation
concept_impact          the 48-test concept-impact assessment (target, other artists, styles, objects, nature)
collateral              retention on phrasings no trainer used, per style and kind of rewording
attack_suite            attack success rate before and after every attack (spatial_erasure.attacks), per model
substitutes             what an erased model paints instead: concept prompts against the base model's neutral twins
regions                 inpainting judged per mask: neutral images, evaluation masks, region styles, outside stats
weight_change           ||dW|| of an erasure file per tensor, UNet block and projection
bars                    the pass/fail bars every report prints (MET / MISS)
toy_model_quality       CLI: quality bars of the bundled toy model (and style_rates, per-style recognition)
toy_inpainting_quality  CLI: can a toy inpainting model paint a prompted style inside a mask
"""
