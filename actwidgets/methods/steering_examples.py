"""Small, hand-written prompt sets for the steering methods (ASC, EAST, KL calibration).

They are deliberately short so a CPU can run them in seconds; they demonstrate the
methods, they do not reproduce the papers' numbers.
"""
from __future__ import annotations

# ASC (Azizi et al. 2025): (question, concise chain of thought, verbose chain of thought).
# The steering vector is mean[h(q + concise) - h(q + verbose)] at the last token.
ASC_PAIRS: list[tuple[str, str, str]] = [
    ("Q: What is 12 + 7?\nA:",
     " 12 + 7 = 19. The answer is 19.",
     " Let me think about this step by step. First, I start with 12. Then I need to add 7 to it. "
     "Counting up from 12 by seven: 13, 14, 15, 16, 17, 18, 19. So after carefully adding, the answer is 19."),
    ("Q: Tom has 3 apples and buys 5 more. How many apples does he have?\nA:",
     " 3 + 5 = 8. The answer is 8.",
     " Okay, let's carefully work through this problem. Tom starts with 3 apples. He then goes to the store "
     "and buys 5 more apples. To find the total, we add them together: 3 plus 5 equals 8. Let me double-check: "
     "yes, 8. The answer is 8."),
    ("Q: What is 6 times 4?\nA:",
     " 6 * 4 = 24. The answer is 24.",
     " Hmm, let me reason about this. Multiplication is repeated addition, so 6 times 4 means adding 6 four "
     "times: 6, 12, 18, 24. Let me verify by adding 4 six times: 4, 8, 12, 16, 20, 24. Both give 24. "
     "The answer is 24."),
    ("Q: A train travels 60 km in 1 hour. How far does it go in 3 hours?\nA:",
     " 60 * 3 = 180 km. The answer is 180.",
     " Let's break this down step by step. The train travels 60 km every hour. We want to know the distance "
     "in 3 hours. So we multiply the speed by the time: 60 times 3. That is 60 + 60 + 60, which equals 180. "
     "So the train goes 180 km. The answer is 180."),
    ("Q: What is 100 - 45?\nA:",
     " 100 - 45 = 55. The answer is 55.",
     " Well, let me think through this subtraction slowly. We start at 100 and take away 45. Taking away 40 "
     "first gives 60, and then taking away the remaining 5 gives 55. Let me check: 55 + 45 = 100. Correct. "
     "The answer is 55."),
]

ASC_CONCISE = [q + s for q, s, _ in ASC_PAIRS]  # "positive" for mean_difference
ASC_VERBOSE = [q + l for q, _, l in ASC_PAIRS]  # "negative"
ASC_LAYER = 15  # the output of block 15 of SmolLM2-135M's 30 (ASC used ~2/3 depth)

# Prompts to calibrate a strength on, and to measure KL over.
CALIBRATION_PROMPTS = [
    "Q: What is 9 + 8?\nA:",
    "Q: Sara reads 4 pages a day. How many pages does she read in 5 days?\nA:",
    "The Eiffel Tower is located in the city of",
    "Q: What is 15 minus 6?\nA:",
]

# EAST (Rahn et al. 2024): a two-armed bandit told as text. Each episode is a list of
# prompts, one per step, each holding the history so far; the action is the next token.
EAST_ACTIONS = [" left", " right"]


def _bandit_episode(history: list[tuple[str, int]]) -> list[str]:
    intro = ("You are playing a game with two slot machines, left and right. "
             "Each round you pick one and may win a coin.\n")
    prompts, lines = [], []
    for step in range(len(history) + 1):
        prompts.append(intro + "".join(lines) + f"Round {step + 1}: I choose")
        if step < len(history):
            arm, coins = history[step]
            lines.append(f"Round {step + 1}: I choose {arm} and win {coins} coin{'s' if coins != 1 else ''}.\n")
    return prompts


EAST_EPISODES: list[list[str]] = [
    _bandit_episode([("left", 1), ("left", 1), ("left", 0)]),
    _bandit_episode([("right", 0), ("left", 1), ("right", 0)]),
    _bandit_episode([("right", 1), ("right", 1), ("right", 1)]),
]
EAST_LAYER = 15


def asc_arithmetic_pairs(tokenizer, n: int = 24, seed: int = 0) -> tuple[list[str], list[str]]:
    """`n` chat-formatted (concise, verbose) worked answers to random additions.

    The instruct model answers inside its chat template, so its steering vector is read
    there too: the same question, then a one-line answer or a step-by-step one.
    """
    import random

    rng = random.Random(seed)
    concise, verbose = [], []
    for _ in range(n):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        question = chat(tokenizer, f"What is {a} + {b}?")
        concise.append(question + f"{a} + {b} = {a + b}.")
        verbose.append(question + f"Let's think step by step. We start with {a}. Then we add {b} to it. Adding {b} "
                       f"to {a} gives us {a + b}. Let me double-check this: {a + b} minus {b} is {a}, which is "
                       f"correct. So the final answer is {a + b}.")
    return concise, verbose


def chat(tokenizer, question: str) -> str:
    """A user question in the model's chat template, ready for the assistant's answer."""
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


ASC_TEST_QUESTIONS = [f"What is {a} + {b}? Explain your reasoning."
                      for a, b in ((12, 9), (33, 14), (7, 26), (18, 18), (25, 11), (40, 3))]
