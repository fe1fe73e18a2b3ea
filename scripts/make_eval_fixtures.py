#!/usr/bin/env python3
"""Reference values for ladder-eval's metrics, from the Python libraries they mirror.

Writes crates/ladder-eval/tests/fixtures/metrics.json, which tests/metrics.rs checks every
Rust metric against. Run by hand (CI never does):

    pip install nltk sacrebleu rapidfuzz jiwer
    python3 scripts/make_eval_fixtures.py

Sources: BLEU from NLTK's sentence_bleu with SmoothingFunction().method1; Levenshtein ratio
from rapidfuzz's Levenshtein.normalized_similarity (cross-checked with a plain dynamic
programme), with the benchmark's 0.0 for two empty strings; CER/WER from jiwer with no
normalising transforms (words are str.split() words), and ladder's convention for an empty
reference (jiwer refuses those); chrF from sacrebleu's CHRF().sentence_score / 100;
suffix_count / rep_4 / zlib_ratio are the degeneration detectors written in plain Python.
"""

import json
import os
import zlib
from importlib.metadata import version

import jiwer
import sacrebleu
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rapidfuzz.distance import Levenshtein

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "ladder-eval", "tests", "fixtures", "metrics.json")

PAGE = {
    "header": "PREFEITURA MUNICIPAL DE SÃO JOSÉ",
    "margin": "fl. 12",
    "footer": "Rua das Flores, 100 — Centro",
    "text": "OFÍCIO nº 45/2020\nAo Senhor Secretário,\nSolicitamos a remessa dos autos do processo.",
}


def js(d):
    return json.dumps(d, ensure_ascii=False)


CASES = [
    # empty strings
    ("both_empty", "", ""),
    ("empty_pred", "", "o gato subiu no telhado"),
    ("empty_ref", "o gato subiu no telhado", ""),
    ("whitespace_only_pred", "   \n", "texto"),
    ("whitespace_only_ref", "texto", " \t "),
    # one word
    ("one_word_same", "gato", "gato"),
    ("one_word_diff", "gato", "cão"),
    ("one_word_in_sentence", "gato", "o gato subiu"),
    ("sentence_vs_one_word", "o gato subiu", "gato"),
    ("one_char", "a", "b"),
    # identical
    ("identical_short", "o gato subiu no telhado", "o gato subiu no telhado"),
    ("identical_long", "Aos vinte e três dias do mês de março de dois mil e vinte, reuniram-se os membros da comissão.",
     "Aos vinte e três dias do mês de março de dois mil e vinte, reuniram-se os membros da comissão."),
    ("identical_three_tokens", "um dois três", "um dois três"),
    ("identical_multiline", "linha um\nlinha dois\nlinha três", "linha um\nlinha dois\nlinha três"),
    # near misses
    ("one_sub_word", "o gato subiu no muro", "o gato subiu no telhado"),
    ("missing_word", "o gato no telhado", "o gato subiu no telhado"),
    ("extra_word", "o gato preto subiu no telhado", "o gato subiu no telhado"),
    ("reordered", "no telhado o gato subiu", "o gato subiu no telhado"),
    ("typo", "o gatp subiu no telhadp", "o gato subiu no telhado"),
    ("case_diff", "O Gato Subiu No Telhado", "o gato subiu no telhado"),
    ("no_overlap", "abc def ghi", "xyz uvw rst"),
    ("two_tokens_match", "o gato", "o gato"),
    ("two_tokens_vs_long", "o gato", "o gato subiu no telhado ontem"),
    ("repeated_token_clip", "the the the the the the the", "the cat is on the mat"),
    ("nltk_doc_example",
     "It is a guide to action which ensures that the military always obeys the commands of the party",
     "It is a guide to action that ensures that the military will forever heed Party commands"),
    ("longer_hyp", "o gato subiu no telhado ontem à noite e dormiu", "o gato subiu no telhado"),
    ("shorter_hyp_partial", "subiu no telhado", "o gato subiu no telhado ontem"),
    ("extra_spaces", "o  gato   subiu\tno telhado", "o gato subiu no telhado"),
    ("newlines_vs_spaces", "o gato\nsubiu\nno telhado", "o gato subiu no telhado"),
    ("leading_trailing_ws", "  o gato subiu  ", "o gato subiu"),
    # Unicode
    ("pt_accents_stripped", "Acao de cobranca no orgao publico", "Ação de cobrança no órgão público"),
    ("pt_accents_same", "Ação de cobrança no órgão público", "Ação de cobrança no órgão público"),
    ("pt_cedilla_one", "coração", "coracao"),
    ("pt_long", "Certifico que o presente é cópia fiel do original, lavrado às fls. 23 do livro nº 7.",
     "Certifico que o presente é cópia fiel do original, lavrado às fls. 32 do livro n° 7."),
    ("cjk_same", "文件编号 第一章 总则", "文件编号 第一章 总则"),
    ("cjk_diff", "文件编号 第一章 总则", "文件編號 第一章 總則"),
    ("cjk_no_spaces", "本文件由市政府发布", "本文件由省政府发布"),
    ("emoji", "ok 👍 feito", "ok 👍 feito ✅"),
    ("nbsp_and_ideographic_space", "o\u00a0gato\u3000subiu", "o gato subiu"),
    ("info_separators", "o\x1cgato\x1fsubiu", "o gato subiu"),
    ("combining_accent", "cafe\u0301 com leite", "café com leite"),
    # punctuation
    ("punct_only", "...", "!!!"),
    ("punct_diff", "Sr. João, bom dia!", "Sr João bom dia"),
    ("punct_attached", "(hi) there.", "( hi ) there ."),
    ("numbers", "R$ 1.234,56 em 12/03/2020", "R$ 1.234,56 em 13/03/2020"),
    ("quotes", "\"aspas\" e 'apóstrofos'", "“aspas” e ‘apóstrofos’"),
    # degenerate outputs
    ("loop_chars", "Texto normal. " + "a" * 300, "Texto normal."),
    ("loop_words", "Recebemos o documento e " + "o documento " * 40, "Recebemos o documento e arquivamos."),
    ("loop_lines", "CERTIDÃO\n" + "Processo nº 123/2020 — arquivado.\n" * 12, "CERTIDÃO\nProcesso nº 123/2020 — arquivado."),
    ("loop_json_field", "{\"text\": \"x\",\n" + "\"header\": \"OFÍCIO\", " * 10 + "\"hea", js(PAGE)),
    ("loop_cjk", "文件编号" * 50, "文件编号 第一章"),
    ("loop_three_times", "Fim da página. " * 3, "Fim da página."),
    ("loop_ab", "Lorem ipsum dolor sit amet consectetur. " + "ab " * 12, "Lorem ipsum dolor sit amet consectetur."),
    ("loop_unicode_probe", "Relatório: " + "ção" * 20, "Relatório: ação"),
    # structured JSON outputs
    ("json_identical", js(PAGE), js(PAGE)),
    ("json_text_typo", js({**PAGE, "text": PAGE["text"].replace("remessa", "remesa")}), js(PAGE)),
    ("json_missing_field", js({k: v for k, v in PAGE.items() if k != "margin"}), js(PAGE)),
    ("json_truncated", js(PAGE)[:80], js(PAGE)),
    ("json_vs_plain", js(PAGE), PAGE["text"]),
    ("json_ascii_escaped", json.dumps(PAGE), js(PAGE)),
    ("json_reordered_keys", js({k: PAGE[k] for k in ["text", "footer", "margin", "header"]}), js(PAGE)),
    # longer generic
    ("paragraph_edit",
     "Nada mais havendo a tratar, foi lavrada a presente ata, que vai assinada por todos os presentes e por mim.",
     "Nada mais havendo a tratar, foi lavrada a presente ata, que vai assinada por todos os presentes."),
    ("paragraph_swap_sentences",
     "Após a leitura da ata anterior, o presidente apresentou as propostas. Reuniram-se os membros.",
     "Reuniram-se os membros. Após a leitura da ata anterior, o presidente apresentou as propostas."),
    ("tab_separated", "nome\tidade\ncarlos\t42", "nome idade\ncarlos 42"),
    ("four_tokens_one_diff", "a b c d", "a b c e"),
    ("five_tokens_same_bag", "e d c b a", "a b c d e"),
]


def dp_levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a):
        cur = [i + 1]
        for j, y in enumerate(b):
            cur.append(min(prev[j] + (x != y), prev[j + 1] + 1, cur[j] + 1))
        prev = cur
    return prev[-1]


def ratio(pred, ref):
    if not pred and not ref:
        return 0.0  # the benchmark's convention; rapidfuzz says 1.0
    r = Levenshtein.normalized_similarity(pred, ref)
    plain = 1 - dp_levenshtein(pred, ref) / max(len(pred), len(ref))
    assert abs(r - plain) < 1e-12, (pred, ref, r, plain)
    return r


def bleu(pred, ref):
    return float(sentence_bleu([ref.split()], pred.split(), smoothing_function=SmoothingFunction().method1))


CHARS = jiwer.Compose([jiwer.ReduceToListOfListOfChars()])
WORDS = jiwer.Compose([jiwer.ReduceToListOfListOfWords()])


def empty_ref_rate(pred_len):
    return 0.0 if pred_len == 0 else 1.0


def cer(pred, ref):
    if not ref:
        return empty_ref_rate(len(pred))
    return float(jiwer.cer(reference=ref, hypothesis=pred, reference_transform=CHARS, hypothesis_transform=CHARS))


def wer(pred, ref):
    p, r = pred.split(), ref.split()
    if not r:
        return empty_ref_rate(len(p))
    return float(jiwer.wer(reference=" ".join(r), hypothesis=" ".join(p), reference_transform=WORDS, hypothesis_transform=WORDS))


def chrf(pred, ref):
    return sacrebleu.metrics.CHRF().sentence_score(pred, [ref]).score / 100


def rep_4(text):
    toks = text.split()
    grams = [tuple(toks[i:i + 4]) for i in range(len(toks) - 3)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def zlib_ratio(text):
    b = text.encode("utf-8")
    return len(b) / len(zlib.compress(b))


def main():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    rows = []
    for name, pred, ref in CASES:
        lev = ratio(pred, ref)
        b = bleu(pred, ref)
        rows.append({
            "name": name,
            "prediction": pred,
            "reference": ref,
            "levenshtein_ratio": lev,
            "bleu": b,
            "score": (lev + b) / 2,
            "cer": cer(pred, ref),
            "wer": wer(pred, ref),
            "chrf": chrf(pred, ref),
            "suffix_count": pred.count(pred[-15:]),
            "rep_4": rep_4(pred),
            "zlib_ratio": zlib_ratio(pred),
        })
    doc = {
        "generator": "scripts/make_eval_fixtures.py",
        "versions": {p: version(p) for p in ["nltk", "sacrebleu", "rapidfuzz", "jiwer"]} | {"zlib": zlib.ZLIB_RUNTIME_VERSION},
        "cases": rows,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(rows)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
