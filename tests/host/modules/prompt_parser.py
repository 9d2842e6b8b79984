"""Host double of modules.prompt_parser: AND prompts (with `:weight`) and the cond batch reconstruction.

Prompt editing ([a:b:step]) is not reproduced: each prompt part has one schedule entry. Each text is encoded on
its own, so prompts over 75 tokens give longer conds (77 per chunk); `reconstruct_multicond_batch` pads the cond
rows of one batch to the longest by repeating each row's last token vector (`stack_conds` of v1.10.1); the uncond
rows of one batch must already agree (v1.10.1 `reconstruct_cond_batch` assigns into a tensor of the first's shape)."""
from __future__ import annotations

import re

import torch

re_AND = re.compile(r"\bAND\b")
re_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


class ScheduledPromptConditioning:
    def __init__(self, end_at_step, cond):
        self.end_at_step = end_at_step
        self.cond = cond


class ComposableScheduledPromptConditioning:
    def __init__(self, schedules, weight=1.0):
        self.schedules = schedules
        self.weight = weight


class MulticondLearnedConditioning:
    def __init__(self, shape, batch):
        self.shape = shape
        self.batch = batch


class DictWithShape(dict):
    def __init__(self, x, shape=None):
        super().__init__()
        self.update(x)

    @property
    def shape(self):
        return self["crossattn"].shape


def get_multicond_prompt_list(prompts):
    res_indexes, flat, indexes_of = [], [], {}
    for prompt in prompts:
        indexes = []
        for sub in re_AND.split(prompt):
            match = re_weight.search(sub)
            text, weight = match.groups() if match is not None else (sub, 1.0)
            weight = float(weight) if weight is not None else 1.0
            if text not in indexes_of:
                indexes_of[text] = len(flat)
                flat.append(text)
            indexes.append((indexes_of[text], weight))
        res_indexes.append(indexes)
    return res_indexes, flat, indexes_of


def _first(cond):
    return {k: v[0] for k, v in cond.items()} if isinstance(cond, dict) else cond[0]


def get_learned_conditioning(model, prompts, steps):
    return [[ScheduledPromptConditioning(steps, _first(model.get_learned_conditioning([text])))] for text in prompts]


def get_multicond_learned_conditioning(model, prompts, steps):
    res_indexes, flat, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, flat, steps)
    batch = [[ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in indexes]
             for indexes in res_indexes]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)


def _pick(schedules, current_step):
    for entry in schedules:
        if current_step <= entry.end_at_step:
            return entry
    return schedules[0]


def reconstruct_cond_batch(c, current_step):
    rows = [_pick(schedules, current_step).cond for schedules in c]
    if isinstance(rows[0], dict):
        stacked = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
        return DictWithShape(stacked)
    return torch.stack(rows)


def stack_conds(tensors):
    """Stack [T_i, C] tensors, padding the shorter ones with copies of their last row (v1.10.1 stack_conds)."""
    count = max(t.shape[0] for t in tensors)
    return torch.stack([t if t.shape[0] == count else torch.cat([t, t[-1:].repeat(count - t.shape[0], 1)])
                        for t in tensors])


def reconstruct_multicond_batch(c: MulticondLearnedConditioning, current_step):
    tensors, conds_list = [], []
    for composable_prompts in c.batch:
        conds_for_batch = []
        for composable in composable_prompts:
            conds_for_batch.append((len(tensors), composable.weight))
            tensors.append(_pick(composable.schedules, current_step).cond)
        conds_list.append(conds_for_batch)
    if isinstance(tensors[0], dict):
        return conds_list, DictWithShape({k: stack_conds([t[k] for t in tensors]) for k in tensors[0]})
    return conds_list, stack_conds(tensors)
