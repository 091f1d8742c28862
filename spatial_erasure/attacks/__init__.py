"""Attacks that try to bring an erased concept back (evaluation/attack_evaluation.py, the attack suite
spatial_erasure.evaluation.attack_suite). Import from the modules themselves:

prompt_sets             prompt attacks: fixed prompt sets per concept (paraphrase, misspelling, famous work, mixed,
                        split) and the plain concept prompts before any attack
inversion               Concept Inversion: one token learned on the model (textual inversion); the denoising pieces
                        and the judge's share the soft-prompt attack uses too
soft_prompt             the soft-prompt attack: k adversarial token embeddings prepended to concept prompts
"""
