#!/usr/bin/env python3
"""Synthetic datasets for ladder's demo: one set per rung of the specialization ladder.

    python3 datasets/generate.py general --rows 3000 --seed 0 --out datasets/general
    python3 datasets/generate.py ocr     --rows 2000 --seed 0 --out datasets/ocr
    python3 datasets/generate.py domain  --rows 1500 --seed 0 --out datasets/domain
    python3 datasets/generate.py all                          # the three committed versions

Standard library only. Output is byte-for-byte deterministic for a given (--rows, --seed):
every random choice comes from a `random.Random` seeded from the command line, nothing
iterates a set or relies on hashing, keys are written in a fixed order and lines end in `\\n`.
See datasets/README.md for the columns and the OCR noise model.
"""

import argparse
import datetime
import json
import os
import sys

import random

HERE = os.path.dirname(os.path.abspath(__file__))

OCR_INSTRUCTION = "Transcribe the OCR text:"
DOMAIN_INSTRUCTION = "Transcribe the OCR page as JSON with the keys header, margin, footer, text:"

# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def pick(rng, seq):
    return seq[rng.randrange(len(seq))]


def sample(rng, seq, k):
    return rng.sample(list(seq), k)


def cap(s):
    return s[:1].upper() + s[1:]


def write_jsonl(path, rows, keys):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps({k: row[k] for k in keys}, ensure_ascii=False, sort_keys=False))
            f.write("\n")


MONTHS_PT = ["janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto",
             "setembro", "outubro", "novembro", "dezembro"]
MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December"]
DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
WEEKDAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEEKDAYS_PT = ["segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira",
               "sábado", "domingo"]


def weekday(date):
    return datetime.date(*date).weekday()


def rand_date(rng, y0, y1):
    y = rng.randint(y0, y1)
    m = rng.randint(1, 12)
    d = rng.randint(1, DAYS_IN_MONTH[m - 1])
    return (y, m, d)


def add_days(date, n):
    y, m, d = date
    d += n
    while d > DAYS_IN_MONTH[m - 1]:
        d -= DAYS_IN_MONTH[m - 1]
        m += 1
        if m > 12:
            m, y = 1, y + 1
    return (y, m, d)


def date_num(date):
    y, m, d = date
    return f"{d:02d}/{m:02d}/{y}"


def date_pt(date):
    y, m, d = date
    return f"{'1º' if d == 1 else d} de {MONTHS_PT[m - 1]} de {y}"


def date_en(date):
    y, m, d = date
    return f"{MONTHS_EN[m - 1]} {d}, {y}"


def date_iso(date):
    y, m, d = date
    return f"{y}-{m:02d}-{d:02d}"


_UNITS = ["zero", "um", "dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove", "dez",
          "onze", "doze", "treze", "quatorze", "quinze", "dezesseis", "dezessete", "dezoito",
          "dezenove"]
_TENS = ["", "", "vinte", "trinta", "quarenta", "cinquenta", "sessenta", "setenta", "oitenta",
         "noventa"]
_HUNDREDS = ["", "cento", "duzentos", "trezentos", "quatrocentos", "quinhentos", "seiscentos",
             "setecentos", "oitocentos", "novecentos"]


def _words999(n):
    if n == 100:
        return "cem"
    h, r = divmod(n, 100)
    parts = []
    if h:
        parts.append(_HUNDREDS[h])
    if r:
        if r < 20:
            parts.append(_UNITS[r])
        else:
            t, u = divmod(r, 10)
            parts.append(_TENS[t] + (f" e {_UNITS[u]}" if u else ""))
    return " e ".join(parts) if parts else "zero"


def words_pt(n):
    """Cardinal in Brazilian Portuguese, 0..999,999 ("mil duzentos e trinta")."""
    if n < 1000:
        return _words999(n)
    th, r = divmod(n, 1000)
    head = "mil" if th == 1 else _words999(th) + " mil"
    if r == 0:
        return head
    joiner = " e " if (r < 100 or r % 100 == 0) else " "
    return head + joiner + _words999(r)


def money_pt(v):
    return "R$ " + f"{v:,}".replace(",", ".") + ",00"


def money_words_pt(v):
    return f"{money_pt(v)} ({words_pt(v)} reais)"


def date_words_pt(date):
    y, m, d = date
    dias = "primeiro dia" if d == 1 else f"{words_pt(d)} dias"
    return f"aos {dias} do mês de {MONTHS_PT[m - 1]} do ano de {words_pt(y)}"


# --------------------------------------------------------------------------------------------
# OCR noise (sets 2 and 3)
# --------------------------------------------------------------------------------------------

# Glyph confusions a real OCR engine makes on scanned print: (seen, read as).
CONFUSIONS = [
    ("rn", "m"), ("m", "rn"), ("l", "1"), ("l", "I"), ("1", "l"), ("I", "l"), ("I", "1"),
    ("O", "0"), ("0", "O"), ("o", "0"), ("cl", "d"), ("d", "cl"), ("e", "c"), ("c", "e"),
    ("h", "b"), ("b", "h"), ("vv", "w"), ("w", "vv"), ("ri", "n"), ("n", "ri"), ("u", "ii"),
    ("S", "5"), ("5", "S"), ("B", "8"), ("8", "B"), ("g", "q"), ("t", "f"), ("f", "t"),
    ("a", "o"), ("i", "í"), ("E", "F"), ("u", "n"), ("n", "u"), ("2", "Z"), ("6", "b"),
]
_CONF_BY_FIRST = {}
for _src, _dst in CONFUSIONS:
    _CONF_BY_FIRST.setdefault(_src[0], []).append((_src, _dst))

# Diacritics the engine drops (Portuguese pages lose them the most), plus º/ª.
ACCENTS = {"á": "a", "à": "a", "â": "a", "ã": "a", "é": "e", "ê": "e", "í": "i", "ó": "o",
           "ô": "o", "õ": "o", "ú": "u", "ü": "u", "ç": "c", "Á": "A", "À": "A", "Â": "A",
           "Ã": "A", "É": "E", "Ê": "E", "Í": "I", "Ó": "O", "Ô": "O", "Õ": "O", "Ú": "U",
           "Ç": "C", "º": "o", "ª": "a", "—": "-", "°": "o"}
STRAY = ["'", ",", ".", "~", "|", "`", "-", ":"]


def wrap_line(rng, line, width, p_hyphen):
    """Reflow one logical line to the page's column width, sometimes hyphenating the word
    that does not fit (`docu-` / `ment`), as a typeset page would."""
    if len(line) <= width:
        return [line]
    out, cur = [], ""
    for word in line.split(" "):
        if not cur:
            cur = word
            continue
        if len(cur) + 1 + len(word) <= width:
            cur += " " + word
            continue
        room = width - len(cur) - 2  # a space and the hyphen
        alpha = word.isalpha()
        if alpha and len(word) >= 6 and room >= 3 and rng.random() < p_hyphen:
            cut = min(room, len(word) - 3)
            # prefer to cut after a vowel, like syllable hyphenation
            while cut > 2 and word[cut - 1].lower() not in "aeiouáéíóúãõâêô":
                cut -= 1
            if cut >= 2:
                out.append(cur + " " + word[:cut] + "-")
                cur = word[cut:]
                continue
        out.append(cur)
        cur = word
    if cur:
        out.append(cur)
    return out


class Noise:
    """Per-row OCR noise. `strength` in [0, 1] scales every rate; `portuguese` raises the
    chance of lost diacritics. Newlines produced by layout are kept; the noise adds or
    removes a few more."""

    def __init__(self, rng, strength, portuguese):
        s = strength
        self.rng = rng
        self.p_conf = 0.035 * s
        self.p_drop = 0.008 * s
        self.p_dup = 0.008 * s
        self.p_stray = 0.008 * s
        self.p_merge = 0.05 * s      # per space: two words run together
        self.p_split = 0.006 * s     # per letter: a word broken by a space
        self.p_break = 0.02 * s      # per space: a spurious line break
        self.p_join = 0.05 * s       # per newline: two lines run together
        # Some scans lose every diacritic (a font the engine does not know); most lose some.
        if portuguese and rng.random() < 0.25 * s + 0.05:
            self.p_accent = 1.0
        else:
            self.p_accent = (0.45 if portuguese else 0.25) * s

    def apply(self, text):
        rng = self.rng
        out = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch == "\n":
                out.append(" " if rng.random() < self.p_join else "\n")
                i += 1
                continue
            if ch == " ":
                r = rng.random()
                if r < self.p_merge:
                    pass
                elif r < self.p_merge + self.p_break:
                    out.append("\n")
                else:
                    out.append(" ")
                i += 1
                continue
            if rng.random() < self.p_stray:
                out.append(pick(rng, STRAY))
            if ch in ACCENTS and rng.random() < self.p_accent:
                out.append(ACCENTS[ch])
                i += 1
                continue
            if ch in _CONF_BY_FIRST and rng.random() < self.p_conf:
                options = [c for c in _CONF_BY_FIRST[ch] if text.startswith(c[0], i)]
                if options:
                    src, dst = pick(rng, options)
                    out.append(dst)
                    i += len(src)
                    continue
            r = rng.random()
            if r < self.p_drop:
                i += 1
                continue
            if r < self.p_drop + self.p_dup:
                out.append(ch + ch)
                i += 1
                continue
            out.append(ch)
            if ch.isalpha() and i + 1 < n and text[i + 1].isalpha() and rng.random() < self.p_split:
                out.append(" ")
            i += 1
        return "".join(out)


def noisy_render(rng, lines, portuguese, strength=None):
    """Lay out logical lines on a page column (wrap + hyphenation) and OCR them."""
    if strength is None:
        strength = min(1.0, 0.05 + rng.random() ** 1.2)
    width = rng.randint(38, 90)
    p_hyphen = 0.2 + 0.6 * rng.random()
    page = []
    for line in lines:
        page.extend(wrap_line(rng, line, width, p_hyphen))
    return Noise(rng, strength, portuguese).apply("\n".join(page))


# --------------------------------------------------------------------------------------------
# Set 1: general text (pre-training a tiny generalist)
# --------------------------------------------------------------------------------------------

EN_FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack",
            "Kate", "Leo", "Mia", "Noah", "Olivia", "Paul", "Rose", "Sam", "Tom", "Vera",
            "Walter", "Zoe", "Lucy", "Martin", "Nora", "Oscar", "Ruth", "Simon", "Helen", "Adam"]
EN_LAST = ["Smith", "Brown", "Taylor", "Wilson", "Clarke", "Walker", "Wright", "Hall", "Green",
           "Baker", "Hill", "Carter", "Mitchell", "Turner", "Parker", "Evans", "Reed", "Cooper",
           "Hughes", "Ward", "Morris", "Bennett", "Gray", "Price", "Fisher"]
PT_FIRST_F = ["Ana", "Beatriz", "Camila", "Daniela", "Eduarda", "Fernanda", "Gabriela", "Helena",
              "Isabela", "Juliana", "Larissa", "Mariana", "Natália", "Patrícia", "Renata",
              "Sofia", "Tatiana", "Vitória", "Luíza", "Carolina", "Aline", "Bruna", "Cláudia",
              "Débora", "Elisa", "Francisca", "Giovana", "Joana", "Letícia", "Márcia", "Rita",
              "Sandra", "Teresa", "Vanessa", "Yasmin", "Lúcia", "Raquel", "Simone", "Priscila",
              "Adriana", "Maria", "Antônia", "Rosângela", "Cecília", "Alice"]
PT_FIRST_M = ["André", "Bruno", "Carlos", "Daniel", "Eduardo", "Felipe", "Gabriel", "Henrique",
              "Igor", "João", "Lucas", "Marcelo", "Nicolas", "Otávio", "Paulo", "Rafael",
              "Sérgio", "Thiago", "Vinícius", "Gustavo", "Antônio", "Francisco", "José",
              "Luiz", "Mateus", "Pedro", "Ricardo", "Rodrigo", "Fábio", "Leandro", "Márcio",
              "Roberto", "Sebastião", "Valdir", "Wagner", "Caio", "Diego", "Emerson", "Jorge",
              "Renato", "Miguel", "Arthur", "Heitor", "Davi", "Benedito"]
PT_LAST = ["Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira",
           "Lima", "Gomes", "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes",
           "Soares", "Fernandes", "Vieira", "Barbosa", "Rocha", "Dias", "Nascimento", "Andrade",
           "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas", "Cardoso", "Ramos",
           "Gonçalves", "Santana", "Teixeira", "Araújo", "Correia", "Pinto", "Moura", "Cavalcanti",
           "Monteiro", "Batista", "Campos", "Castro", "Sampaio", "Azevedo", "Barros", "Borges",
           "Brandão", "Coelho", "Duarte", "Farias", "Leite", "Macedo", "Miranda", "Nogueira",
           "Pacheco", "Queiroz", "Reis", "Siqueira", "Tavares", "Xavier", "Prado", "Aguiar",
           "Figueiredo", "Bezerra", "Guimarães", "Medeiros", "Peixoto", "Magalhães", "Cunha",
           "Conceição", "Cruz", "Fonseca", "Anjos", "Paiva", "Rezende", "Vasconcelos", "Matos"]
EN_TOWNS = ["Ashford", "Bramley", "Caldwell", "Dunmore", "Eastbrook", "Fairhaven", "Glenwood",
            "Harlow", "Kingsbridge", "Linton", "Millbrook", "Northfield", "Oakridge", "Penrith",
            "Redhill", "Stonebridge", "Thornbury", "Westmere", "Whitby", "Yarrow"]
PT_TOWNS = ["Campinas", "Sorocaba", "Londrina", "Joinville", "Uberlândia", "Petrópolis",
            "Ouro Preto", "Paraty", "Olinda", "Blumenau", "Maringá", "Juiz de Fora", "Santos",
            "Niterói", "Caruaru", "Pelotas", "Itajaí", "Bauru", "Piracicaba", "Cuiabá"]

# Places with coherent details: (place, descriptions, activities) in each language.
EN_PLACES = [
    ("market", ["The stalls were full of ripe tomatoes, bread and bunches of flowers.",
                "It was crowded, and the fishmonger was shouting his prices.",
                "A light rain had kept most of the usual buyers at home."],
     ["bought a bag of oranges and a loaf of rye bread", "talked with the baker about the weather",
      "looked for fresh basil for dinner", "compared the price of apples at three stalls"]),
    ("library", ["The reading room was quiet except for the turning of pages.",
                 "A new shelf of travel books had been set up near the entrance.",
                 "The librarian was sorting returned books into a wooden cart."],
     ["returned two overdue novels", "found an old atlas of the region",
      "read the local newspaper for an hour", "borrowed a book about birds"]),
    ("harbour", ["Small boats rocked against the stone wall.",
                 "The tide was going out and the air smelled of salt.",
                 "Fishermen were mending their nets in the sun."],
     ["watched the ferry leave for the island", "bought fresh sardines from a boat",
      "sat on a bench and sketched the lighthouse", "asked about the times of the evening boat"]),
    ("park", ["Children were flying kites on the hill.", "The oak trees had started to turn yellow.",
              "An old man was feeding the ducks by the pond."],
     ["walked twice around the lake", "read a letter on a bench under the trees",
      "played chess with a neighbour", "took photographs of the flower beds"]),
    ("railway station", ["The departure board showed a delay of twenty minutes.",
                         "Travellers with heavy suitcases filled the platform.",
                         "A brass band was playing near the ticket office."],
     ["bought a return ticket to the coast", "waited for a friend arriving on the noon train",
      "drank a cup of tea in the small café", "checked the timetable for the weekend"]),
    ("bakery", ["The smell of cinnamon filled the whole street.",
                "Trays of warm rolls were cooling by the window.",
                "The baker had been working since four in the morning."],
     ["ordered a dozen rolls for the family", "tried a slice of the new walnut cake",
      "asked for the recipe of the honey bread", "picked up a birthday cake"]),
    ("post office", ["A short queue had formed in front of the only open counter.",
                     "Parcels of every size were stacked behind the clerk."],
     ["sent a parcel to a cousin abroad", "bought stamps for the holiday cards",
      "collected a registered letter", "paid the electricity bill"]),
]
PT_PLACES = [
    ("feira", ["As bancas estavam cheias de tomates maduros, pães e flores.",
               "Estava lotada, e o peixeiro anunciava os preços em voz alta.",
               "Uma chuva fina tinha deixado quase todos os fregueses em casa."],
     ["comprou um saco de laranjas e um pão de centeio", "conversou com o padeiro sobre o tempo",
      "procurou manjericão fresco para o jantar", "comparou o preço das maçãs em três bancas"]),
    ("biblioteca", ["A sala de leitura estava em silêncio, a não ser pelo virar das páginas.",
                    "Uma nova estante de livros de viagem tinha sido montada perto da entrada.",
                    "A bibliotecária separava os livros devolvidos num carrinho de madeira."],
     ["devolveu dois romances atrasados", "encontrou um atlas antigo da região",
      "leu o jornal local durante uma hora", "pegou emprestado um livro sobre pássaros"]),
    ("porto", ["Pequenos barcos balançavam junto ao cais de pedra.",
               "A maré estava baixando e o ar cheirava a sal.",
               "Os pescadores consertavam as redes ao sol."],
     ["viu a balsa partir para a ilha", "comprou sardinhas frescas direto do barco",
      "sentou-se num banco e desenhou o farol", "perguntou o horário do barco da tarde"]),
    ("praça", ["As crianças soltavam pipa no gramado.", "Os ipês tinham começado a florir.",
               "Um senhor jogava milho para os pombos perto do coreto."],
     ["deu duas voltas ao redor do lago", "leu uma carta num banco debaixo das árvores",
      "jogou damas com um vizinho", "fotografou os canteiros de flores"]),
    ("rodoviária", ["O painel mostrava um atraso de vinte minutos.",
                    "Viajantes com malas pesadas lotavam a plataforma.",
                    "Um vendedor oferecia pão de queijo quentinho."],
     ["comprou uma passagem de ida e volta para o litoral", "esperou uma amiga que chegava no ônibus do meio-dia",
      "tomou um café na lanchonete", "conferiu os horários do fim de semana"]),
    ("padaria", ["O cheiro de canela tomava conta da rua inteira.",
                 "Bandejas de pão francês esfriavam perto da janela.",
                 "O padeiro estava trabalhando desde as quatro da manhã."],
     ["encomendou uma dúzia de pães para a família", "provou uma fatia do novo bolo de fubá",
      "pediu a receita da rosca de mel", "buscou um bolo de aniversário"]),
    ("agência dos Correios", ["Uma pequena fila tinha se formado diante do único guichê aberto.",
                              "Pacotes de todos os tamanhos estavam empilhados atrás do atendente."],
     ["enviou uma encomenda para um primo no exterior", "comprou selos para os cartões de fim de ano",
      "retirou uma carta registrada", "pagou a conta de luz"]),
]
EN_WHEN = ["On Saturday morning", "Early on a Tuesday", "Late in the afternoon", "After lunch",
           "On the first warm day of spring", "One cold evening in November", "Before work",
           "On a windy Sunday"]
PT_WHEN = ["No sábado de manhã", "Bem cedo numa terça-feira", "No fim da tarde", "Depois do almoço",
           "No primeiro dia quente da primavera", "Numa noite fria de junho", "Antes do trabalho",
           "Num domingo de muito vento"]
EN_AFTER = ["on the way home {p} stopped to watch the sunset", "later {p} met an old school friend",
            "by noon {p} was back at home", "then {p} wrote a short note in a diary",
            "before leaving {p} promised to come back the next week"]
PT_AFTER = ["na volta para casa {p} parou para ver o pôr do sol", "mais tarde {p} encontrou um velho amigo de escola",
            "ao meio-dia {p} já estava em casa", "depois {p} escreveu uma nota curta no caderno",
            "antes de sair {p} prometeu voltar na semana seguinte"]
EN_CLOSE = ["It had been a simple but pleasant day.", "The whole trip had taken less than two hours.",
            "Nothing unusual happened, and that was exactly what was needed.",
            "It was the kind of errand that makes a week feel ordinary in a good way."]
PT_CLOSE = ["Tinha sido um dia simples, mas agradável.", "O passeio todo levou menos de duas horas.",
            "Nada de extraordinário aconteceu, e era exatamente disso que precisava.",
            "Era o tipo de tarefa que deixa a semana tranquila."]

EN_TOPICS = {
    "the water cycle": ["Water evaporates from seas, lakes and rivers when the sun warms them.",
                        "The vapour rises, cools and condenses into tiny droplets that form clouds.",
                        "When the droplets grow heavy, they fall back as rain, snow or hail.",
                        "Part of the water soaks into the ground and feeds springs and wells.",
                        "Rivers carry the rest back to the sea, and the cycle begins again."],
    "making bread": ["Bread needs only flour, water, salt and yeast.",
                     "The dough is kneaded until it becomes smooth and elastic.",
                     "It then rests in a warm place until it doubles in size.",
                     "After shaping, the loaf is baked in a hot oven for about forty minutes.",
                     "A loaf is ready when it sounds hollow when tapped underneath."],
    "bees": ["Honey bees live in colonies of several thousand workers and one queen.",
             "Workers collect nectar and pollen from flowers within a few kilometres of the hive.",
             "Nectar is stored in wax cells and slowly turns into honey.",
             "By moving from flower to flower, bees pollinate many fruits and vegetables.",
             "In winter the colony clusters together to keep the queen warm."],
    "bicycles": ["A bicycle turns the effort of the legs into forward motion through a chain.",
                 "Gears let the rider keep a steady pace on hills and on flat roads.",
                 "Tyres should be checked every week, because soft tyres make riding harder.",
                 "A bell, a front light and a rear reflector are required in many cities.",
                 "Cycling to work is cheap, quiet and good for the heart."],
    "public libraries": ["Public libraries lend books, films and music free of charge.",
                         "Most of them also offer computers and free internet access.",
                         "Children's sections often host reading hours on weekends.",
                         "A library card is usually issued on proof of address.",
                         "Many libraries keep local newspapers going back more than a century."],
    "saving energy at home": ["Turning off lights in empty rooms is the simplest way to save energy.",
                              "Washing clothes at lower temperatures uses much less electricity.",
                              "Good insulation keeps a house warm in winter and cool in summer.",
                              "Old appliances often use twice as much power as new ones.",
                              "Unplugging chargers at night also makes a small difference."],
}
PT_TOPICS = {
    "o ciclo da água": ["A água evapora dos mares, lagos e rios quando o sol os aquece.",
                        "O vapor sobe, esfria e se condensa em gotículas que formam as nuvens.",
                        "Quando as gotas ficam pesadas, caem de volta como chuva ou granizo.",
                        "Parte da água penetra no solo e abastece nascentes e poços.",
                        "Os rios levam o restante de volta ao mar, e o ciclo recomeça."],
    "como fazer pão": ["O pão precisa apenas de farinha, água, sal e fermento.",
                       "A massa é sovada até ficar lisa e elástica.",
                       "Depois descansa em lugar aquecido até dobrar de volume.",
                       "Modelado, o pão vai ao forno quente por cerca de quarenta minutos.",
                       "Está pronto quando soa oco ao ser batido por baixo."],
    "as abelhas": ["As abelhas vivem em colônias com milhares de operárias e uma rainha.",
                   "As operárias coletam néctar e pólen em flores a poucos quilômetros da colmeia.",
                   "O néctar é guardado em alvéolos de cera e aos poucos se transforma em mel.",
                   "Ao passar de flor em flor, as abelhas polinizam muitas frutas e hortaliças.",
                   "No inverno a colônia se agrupa para manter a rainha aquecida."],
    "a bicicleta": ["A bicicleta transforma o esforço das pernas em movimento por meio da corrente.",
                    "As marchas permitem manter um ritmo constante nas subidas e no plano.",
                    "Os pneus devem ser calibrados toda semana, pois pneus murchos cansam mais.",
                    "Campainha, farol dianteiro e refletor traseiro são obrigatórios em muitas cidades.",
                    "Ir de bicicleta ao trabalho é barato, silencioso e faz bem ao coração."],
    "as bibliotecas públicas": ["As bibliotecas públicas emprestam livros, filmes e discos gratuitamente.",
                                "A maioria também oferece computadores e internet sem custo.",
                                "As seções infantis costumam ter hora do conto nos fins de semana.",
                                "A carteirinha geralmente é emitida com um comprovante de endereço.",
                                "Muitas guardam jornais locais de mais de cem anos atrás."],
    "economia de energia em casa": ["Apagar as luzes de cômodos vazios é a forma mais simples de economizar.",
                                    "Lavar roupa em água fria gasta muito menos eletricidade.",
                                    "Um bom isolamento mantém a casa fresca no verão.",
                                    "Aparelhos antigos chegam a consumir o dobro dos novos.",
                                    "Tirar os carregadores da tomada à noite também ajuda um pouco."],
}
EN_TOPIC_OPEN = ["Here is a short note on {t}.", "A few facts about {t}:", "{T} is simpler than it looks.",
                 "Many people ask about {t}."]
PT_TOPIC_OPEN = ["Segue uma nota curta sobre {t}.", "Alguns fatos sobre {t}:",
                 "{T} é mais simples do que parece.", "Muita gente pergunta sobre {t}."]


TOWN_EN = {
    "size": ["small", "quiet", "busy", "old market", "hill", "river", "coastal"],
    "where": ["on the banks of a wide river", "at the foot of a range of low hills", "by a sheltered bay",
              "in the middle of farmland", "at the end of the old railway line", "on a plateau above the valley"],
    "known": ["its stone bridge", "its Saturday market", "its cheese", "a Gothic church", "its apple orchards",
              "a music festival", "its wool mills", "a long sandy beach", "its botanical garden"],
    "event": ["the streets fill with stalls for the harvest fair", "a regatta is held on the river",
              "the school choir sings in the square", "farmers bring their animals to the show ground",
              "the whole town turns out for the lantern parade", "a book fair takes over the town hall"],
    "season": ["spring", "summer", "autumn", "winter", "September", "May"],
    "work": ["farming and small shops", "tourism", "the hospital and the schools", "fishing and boat repair",
             "a large furniture factory", "the nearby quarry", "offices in the city, an hour away by train"],
    "close": ["Visitors usually stay for a weekend.", "Housing is cheaper than in the city, so many young families have moved in.",
              "The population has hardly changed in fifty years.", "A new cycle path now links it with the next village.",
              "The old cinema was recently restored as a community centre."],
}
TOWN_PT = {
    "size": ["pequena", "tranquila", "movimentada", "antiga", "serrana", "ribeirinha", "litorânea"],
    "where": ["às margens de um rio largo", "ao pé de uma serra baixa", "junto a uma baía abrigada",
              "no meio de uma região agrícola", "no fim da antiga linha de trem", "num planalto acima do vale"],
    "known": ["sua ponte de pedra", "sua feira de sábado", "seus queijos", "uma igreja barroca", "seus cafezais",
              "um festival de música", "suas fábricas de doces", "uma praia extensa", "seu jardim botânico"],
    "event": ["as ruas se enchem de barracas para a festa da colheita", "acontece uma regata no rio",
              "o coral da escola se apresenta na praça", "os produtores trazem seus animais para a exposição",
              "a cidade inteira sai para a procissão", "uma feira do livro ocupa a prefeitura"],
    "season": ["na primavera", "no verão", "no outono", "no inverno", "em setembro", "em julho"],
    "work": ["na agricultura e no comércio", "no turismo", "no hospital e nas escolas", "na pesca e no conserto de barcos",
             "numa grande fábrica de móveis", "na pedreira da região", "na capital, a uma hora de ônibus"],
    "close": ["Os visitantes costumam ficar um fim de semana.", "A moradia é mais barata que na capital, e muitas famílias jovens se mudaram para lá.",
              "A população quase não mudou em cinquenta anos.", "Uma nova ciclovia liga a cidade ao distrito vizinho.",
              "O antigo cinema foi restaurado e virou centro cultural."],
}
DIARY_EN = {"did": ["finished the report for work", "repaired the kitchen tap", "visited my grandmother",
                    "planted tomatoes in the back garden", "cleaned out the garage", "went swimming before breakfast",
                    "baked bread for the first time", "met Anna for lunch in town", "read half of a new novel"],
            "felt": ["I felt tired but pleased.", "It was harder than I expected.", "I should do this more often.",
                     "Nothing went quite to plan, but it was fine.", "It put me in a good mood for the evening."],
            "plan": ["call the plumber", "go to the library", "start the new course", "write to my cousin",
                     "take the bike for a long ride", "pay the gas bill", "sort out the photographs"]}
DIARY_PT = {"did": ["terminei o relatório do trabalho", "consertei a torneira da cozinha", "visitei minha avó",
                    "plantei tomates no quintal", "arrumei a garagem", "nadei antes do café da manhã",
                    "fiz pão pela primeira vez", "almocei com a Ana no centro", "li metade de um romance novo"],
            "felt": ["Fiquei cansado, mas satisfeito.", "Foi mais difícil do que eu esperava.", "Preciso fazer isso mais vezes.",
                     "Nada saiu como planejado, mas tudo bem.", "Isso me deixou de bom humor para a noite."],
            "plan": ["ligar para o encanador", "ir à biblioteca", "começar o curso novo", "escrever para minha prima",
                     "dar uma volta longa de bicicleta", "pagar a conta de gás", "organizar as fotografias"]}


def gen_town(rng, pt):
    t = {k: pick(rng, v) for k, v in (TOWN_PT if pt else TOWN_EN).items()}
    k1, k2 = sample(rng, (TOWN_PT if pt else TOWN_EN)["known"], 2)
    if pt:
        town = pick(rng, PT_TOWNS)
        s = [f"{town} é uma cidade {t['size']} {t['where']}.", f"É conhecida por {k1} e por {k2}.",
             f"Todos os anos, {t['season']}, {t['event']}.", f"A maior parte dos moradores trabalha {t['work']}."]
    else:
        town = pick(rng, EN_TOWNS)
        s = [f"{town} is a {t['size']} town {t['where']}.", f"It is known for {k1} and {k2}.",
             f"Every {t['season']}, {t['event']}.", f"Most people work in {t['work']}."]
    if rng.random() < 0.7:
        s.append(t["close"])
    return " ".join(s)


def gen_diary(rng, pt):
    src = DIARY_PT if pt else DIARY_EN
    did = sample(rng, src["did"], rng.randint(1, 2))
    d = rand_date(rng, 2015, 2025)
    w = pick(rng, WEATHER_PT if pt else WEATHER_EN)
    if pt:
        return (f"{cap(WEEKDAYS_PT[weekday(d)])}, {date_pt(d)}. O dia estava {w}. Hoje {' e '.join(did)}. "
                f"{pick(rng, src['felt'])} Amanhã preciso {pick(rng, src['plan'])}.").replace("estava chuva", "teve chuva").replace("estava neblina", "teve neblina").replace("estava trovoadas", "teve trovoadas").replace("estava ventania", "teve ventania").replace("estava céu limpo", "estava de céu limpo")
    return (f"{WEEKDAYS_EN[weekday(d)]}, {date_en(d)}. Weather: {w}. Today I {' and '.join(did)}. "
            f"{pick(rng, src['felt'])} Tomorrow I need to {pick(rng, src['plan'])}.")


def _pron_en(rng):
    g = rng.random() < 0.5
    return (pick(rng, EN_FIRST), "she" if g else "he")


def gen_prose_en(rng):
    if rng.random() < 0.55:
        name, p = _pron_en(rng)
        place, descs, acts = pick(rng, EN_PLACES)
        town = pick(rng, EN_TOWNS)
        a = sample(rng, acts, 2)
        s = [f"{pick(rng, EN_WHEN)}, {name} went to the {place} in {town}.",
             pick(rng, descs),
             f"{cap(p)} {a[0]} and {a[1]}.",
             cap(pick(rng, EN_AFTER).format(p=p)) + "."]
        if rng.random() < 0.6:
            s.append(pick(rng, EN_CLOSE))
        return " ".join(s)
    t = pick(rng, sorted(EN_TOPICS))
    facts = EN_TOPICS[t]
    k = rng.randint(3, len(facts))
    idx = sorted(sample(rng, range(len(facts)), k))
    return " ".join([pick(rng, EN_TOPIC_OPEN).format(t=t, T=cap(t))] + [facts[i] for i in idx])


def gen_prose_pt(rng):
    if rng.random() < 0.55:
        fem = rng.random() < 0.5
        name = pick(rng, PT_FIRST_F if fem else PT_FIRST_M)
        p = "ela" if fem else "ele"
        place, descs, acts = pick(rng, PT_PLACES)
        town = pick(rng, PT_TOWNS)
        a = sample(rng, acts, 2)
        art = "à" if place in ("feira", "biblioteca", "praça", "rodoviária", "padaria", "agência dos Correios") else "ao"
        s = [f"{pick(rng, PT_WHEN)}, {name} foi {art} {place} de {town}.",
             pick(rng, descs),
             f"{cap(p)} {a[0]} e {a[1]}.",
             cap(pick(rng, PT_AFTER).format(p=p)) + "."]
        if rng.random() < 0.6:
            s.append(pick(rng, PT_CLOSE))
        return " ".join(s)
    t = pick(rng, sorted(PT_TOPICS))
    facts = PT_TOPICS[t]
    k = rng.randint(3, len(facts))
    idx = sorted(sample(rng, range(len(facts)), k))
    return " ".join([pick(rng, PT_TOPIC_OPEN).format(t=t, T=cap(t))] + [facts[i] for i in idx])


BOOKS_EN = ["The Silent Harbour", "A History of Bridges", "Gardening in Small Spaces", "The Last Train North",
            "Birds of the Coast", "Cooking with Grains", "Letters from the Valley", "An Introduction to Astronomy"]
BOOKS_PT = ["O Cais Silencioso", "Uma História das Pontes", "Hortas em Pequenos Espaços",
            "O Último Trem para o Norte", "Aves do Litoral", "Cozinha com Grãos", "Cartas do Vale",
            "Introdução à Astronomia"]
WEATHER_EN = ["sunny", "cloudy", "light rain", "heavy rain", "fog in the morning", "clear sky", "thunderstorm", "windy"]
WEATHER_PT = ["ensolarado", "nublado", "chuva fraca", "chuva forte", "neblina pela manhã", "céu limpo",
              "trovoadas", "ventania"]
GOODS_EN = ["kitchen scale", "desk lamp", "wool blanket", "printer paper (5 reams)", "garden hose", "coffee grinder"]
GOODS_PT = ["balança de cozinha", "luminária de mesa", "cobertor de lã", "papel sulfite (5 resmas)",
            "mangueira de jardim", "moedor de café"]


def gen_record(rng, pt):
    kind = rng.randrange(4)
    if pt:
        name = f"{pick(rng, PT_FIRST_F + PT_FIRST_M)} {pick(rng, PT_LAST)}"
        town = pick(rng, PT_TOWNS)
    else:
        name = f"{pick(rng, EN_FIRST)} {pick(rng, EN_LAST)}"
        town = pick(rng, EN_TOWNS)
    d = rand_date(rng, 2019, 2025)
    if kind == 0:
        books = sample(rng, BOOKS_PT if pt else BOOKS_EN, rng.randint(1, 3))
        if pt:
            lines = ["Carteirinha da Biblioteca Municipal de " + town, f"Nome: {name}",
                     f"Número: {rng.randint(10000, 99999)}", f"Emissão: {date_num(d)}",
                     f"Validade: {date_num((d[0] + 2, d[1], d[2]))}",
                     f"Empréstimos em aberto: {len(books)}"] + [f"- {b} (devolver até {date_num(add_days(d, 14 + 7 * i))})" for i, b in enumerate(books)]
        else:
            lines = [f"{town} Public Library card", f"Name: {name}", f"Card number: {rng.randint(10000, 99999)}",
                     f"Issued: {date_iso(d)}", f"Expires: {date_iso((d[0] + 2, d[1], d[2]))}",
                     f"Books on loan: {len(books)}"] + [f"- {b} (due {date_iso(add_days(d, 14 + 7 * i))})" for i, b in enumerate(books)]
    elif kind == 1:
        item = pick(rng, GOODS_PT if pt else GOODS_EN)
        kg = rng.randint(1, 40) / 2
        if pt:
            lines = ["Registro de envio", f"Código de rastreio: BR{rng.randint(100000000, 999999999)}BR",
                     f"Remetente: {name}, {town}", f"Destinatário: {pick(rng, PT_FIRST_F + PT_FIRST_M)} {pick(rng, PT_LAST)}, {pick(rng, PT_TOWNS)}",
                     f"Conteúdo: {item}", f"Peso: {kg:.1f} kg".replace(".", ","), f"Postado em: {date_num(d)}",
                     f"Previsão de entrega: {date_num(add_days(d, rng.randint(2, 9)))}",
                     f"Situação: {pick(rng, ['em trânsito', 'entregue', 'aguardando retirada', 'saiu para entrega'])}"]
        else:
            lines = ["Shipping record", f"Tracking number: {rng.choice('ABCDEFGH')}{rng.randint(10000000, 99999999)}",
                     f"Sender: {name}, {town}", f"Recipient: {pick(rng, EN_FIRST)} {pick(rng, EN_LAST)}, {pick(rng, EN_TOWNS)}",
                     f"Contents: {item}", f"Weight: {kg:.1f} kg", f"Shipped: {date_iso(d)}",
                     f"Expected delivery: {date_iso(add_days(d, rng.randint(2, 9)))}",
                     f"Status: {pick(rng, ['in transit', 'delivered', 'awaiting collection', 'out for delivery'])}"]
    elif kind == 2:
        n = rng.randint(3, 6)
        base = rng.randint(8, 26)
        lines = [f"Diário do tempo — {town}" if pt else f"Weather log — {town}"]
        for i in range(n):
            day = add_days(d, i)
            lo = base + rng.randint(-3, 2)
            hi = lo + rng.randint(3, 11)
            w = pick(rng, WEATHER_PT if pt else WEATHER_EN)
            if pt:
                lines.append(f"{date_num(day)}: mín. {lo} °C, máx. {hi} °C, {w}, vento {rng.randint(2, 40)} km/h")
            else:
                lines.append(f"{date_iso(day)}: low {lo} °C, high {hi} °C, {w}, wind {rng.randint(2, 40)} km/h")
    else:
        if pt:
            lines = ["Ficha de cadastro de funcionário", f"Nome: {name}", f"Matrícula: {rng.randint(1000, 9999)}",
                     f"Setor: {pick(rng, ['Financeiro', 'Compras', 'Logística', 'Recursos Humanos', 'Atendimento'])}",
                     f"Admissão: {date_num(d)}", f"Cidade: {town}",
                     f"Ramal: {rng.randint(200, 899)}", f"Turno: {pick(rng, ['manhã', 'tarde', 'integral'])}"]
        else:
            lines = ["Employee record", f"Name: {name}", f"Staff ID: {rng.randint(1000, 9999)}",
                     f"Department: {pick(rng, ['Finance', 'Purchasing', 'Logistics', 'Human Resources', 'Customer Service'])}",
                     f"Start date: {date_iso(d)}", f"Office: {town}", f"Extension: {rng.randint(200, 899)}",
                     f"Shift: {pick(rng, ['morning', 'afternoon', 'full day'])}"]
    return "\n".join(lines)


def alt(rng, s):
    """One of the " | "-separated phrasings of a line."""
    return pick(rng, s.split(" | "))


# Scenes: (slots, turns); each turn is (speaker 0 or 1, phrasings). Slots are drawn per row.
DIALOGUES_EN = [
    ({"drink": ["a flat white", "an orange juice", "a mint tea", "a cappuccino", "a hot chocolate"],
      "food": ["a cheese scone", "a slice of carrot cake", "a toasted sandwich", "a croissant"]},
     [(1, "Good morning! What can I get you? | Hi there, what would you like? | Morning. What are you having today?"),
      (0, "I'd like {drink}, please. | Could I have {drink}? | Just {drink} for me, thanks."),
      (1, "Anything to eat with that? | Anything else? | Would you like something to eat?"),
      (0, "Yes, {food} as well. | Go on then, {food}. | Maybe {food}, if you still have one."),
      (1, "That's {price} altogether. | {price}, please. | That comes to {price}."),
      (0, "Here you are. | Can I pay by card? | Keep the change."),
      (1, "Thank you, I'll bring it to your table. | Lovely, have a nice day. | Enjoy!")]),
    ({"place": ["the pharmacy", "the museum", "the station", "the post office", "the town hall"],
      "side": ["right", "left"], "k": ["two", "three", "four"]},
     [(0, "Excuse me, how do I get to {place}? | Sorry to bother you, where is {place}? | Could you tell me the way to {place}?"),
      (1, "Go straight for {k} blocks and turn {side}. | Take the second street on the {side}, it's {k} blocks from here. | Follow this road and turn {side} after {k} blocks."),
      (0, "Is it far to walk? | Can I walk there? | Is there a bus?"),
      (1, "Not really, about {mins} minutes. | It's a {mins}-minute walk. | You can walk, it's only {mins} minutes."),
      (0, "Thank you so much! | Great, thanks. | Thanks for your help.")]),
    ({"n": ["one night", "two nights", "three nights", "a week"],
      "guests": ["Two people.", "Just me.", "Two adults and a child."]},
     [(0, "Good afternoon, I'd like to book a room for {n}. | Hello, do you have a room free for {n}?"),
      (1, "Of course. For how many people? | Let me check. How many guests?"),
      (0, "{guests}"),
      (1, "Breakfast is included. May I see some identification? | We have a room with a view of the garden. Could I have your name, please?"),
      (0, "~Sure, here is my passport. | It's {name}."),
      (1, "All set, room {room}. Check-out is at noon. | Your room is {room}, on the second floor. Enjoy your stay.")]),
    ({"dev": ["the printer", "the router", "the laptop", "the projector"]},
     [(0, "Hi, {dev} stopped working yesterday. | Hello, I have a problem with {dev}. | Sorry, {dev} isn't working again."),
      (1, "Have you tried switching it off and on again? | What happens when you turn it on? | Is there an error message?"),
      (0, "Yes, twice. The light keeps blinking. | Nothing happens at all. | It says the device is not connected."),
      (1, "Then let's check the cable. Is it plugged in firmly? | Let me have a look. Can you bring it to my desk?"),
      (0, "~Oh, the cable was loose. It works again! | Sure, I'll bring it after lunch."),
      (1, "~Great. Call me if it happens again. | Fine, I'll be here all afternoon.")]),
    ({"day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"], "time": ["nine", "ten", "half past two", "four"]},
     [(0, "Hello, I'd like to make an appointment with the doctor. | Good morning, can I book a check-up?"),
      (1, "Certainly. Is {day} at {time} all right? | The first free slot is {day} at {time}."),
      (0, "That's fine. | Do you have anything earlier? | {day} works for me."),
      (1, "Then I'll put you down for {day}. Can I have your date of birth? | Noted. Please bring your health card."),
      (0, "Of course. Thank you. | Thanks, see you on {day}.")]),
]
DIALOGUES_PT = [
    ({"drink": ["um café com leite", "um suco de laranja", "um chá de hortelã", "um cappuccino", "um pingado"],
      "food": ["um pão de queijo", "uma fatia de bolo de cenoura", "um misto-quente", "uma coxinha"]},
     [(1, "Bom dia! O que vai ser? | Oi, o que você vai querer? | Bom dia, posso ajudar?"),
      (0, "Eu queria {drink}, por favor. | Me vê {drink}? | Só {drink}, obrigada."),
      (1, "Mais alguma coisa? | Vai querer comer alguma coisa? | Mais algum pedido?"),
      (0, "Sim, {food} também. | Pode ser {food}. | Hoje não, obrigada."),
      (1, "Fica R$ {reais},00 ao todo. | Deu R$ {reais},00. | São R$ {reais},00."),
      (0, "Pode ser no cartão? | Vou pagar no Pix. | Aqui está, pode ficar com o troco."),
      (1, "Pode, sim. Já levo na mesa. | Obrigado, volte sempre! | Tudo certo, bom dia!")]),
    ({"place": ["a farmácia", "o museu", "a estação", "o correio", "a prefeitura"],
      "side": ["direita", "esquerda"], "k": ["dois", "três", "quatro"]},
     [(0, "Com licença, como eu chego até {place}? | Desculpe, sabe onde fica {place}? | Pode me ensinar o caminho para {place}?"),
      (1, "Siga reto por {k} quarteirões e vire à {side}. | Pegue a segunda rua à {side}, fica a {k} quarteirões daqui. | Vá por esta rua e vire à {side} depois de {k} quarteirões."),
      (0, "É longe para ir a pé? | Dá para ir andando? | Tem ônibus para lá?"),
      (1, "Não, uns {mins} minutos. | Dá uns {mins} minutos a pé. | Dá para ir andando, são só {mins} minutos."),
      (0, "Muito obrigada! | Valeu, obrigada. | Obrigada pela ajuda.")]),
    ({"n": ["uma noite", "duas noites", "três noites", "uma semana"],
      "guests": ["Duas pessoas.", "Só para mim.", "Dois adultos e uma criança."]},
     [(0, "Boa tarde, eu gostaria de reservar um quarto para {n}. | Olá, vocês têm quarto disponível para {n}?"),
      (1, "Claro. Para quantas pessoas? | Vou verificar. Quantos hóspedes?"),
      (0, "{guests}"),
      (1, "O café da manhã está incluído. Pode me passar um documento? | Temos um quarto com vista para o jardim. Qual é o seu nome?"),
      (0, "~Claro, aqui está minha identidade. | É {name}."),
      (1, "Pronto, quarto {room}. O check-out é até o meio-dia. | Seu quarto é o {room}, no segundo andar. Boa estadia.")]),
    ({"dev": ["a impressora", "o roteador", "o notebook", "o projetor"]},
     [(0, "Oi, {dev} parou de funcionar desde ontem. | Olá, estou com um problema com {dev}. | Desculpe, {dev} deu problema de novo."),
      (1, "Você já tentou desligar e ligar de novo? | O que acontece quando você liga? | Aparece alguma mensagem de erro?"),
      (0, "Já, duas vezes. A luz fica piscando. | Não acontece nada. | Diz que o aparelho não está conectado."),
      (1, "Então vamos verificar o cabo. Está bem encaixado? | Deixa eu dar uma olhada. Pode trazer até a minha mesa?"),
      (0, "~O cabo estava solto. Agora voltou a funcionar! | Claro, levo depois do almoço."),
      (1, "~Ótimo. Qualquer coisa é só chamar. | Combinado, fico aqui a tarde toda.")]),
    ({"day": ["segunda", "terça", "quarta", "quinta", "sexta"], "time": ["nove", "dez", "duas e meia", "quatro"]},
     [(0, "Olá, eu queria marcar uma consulta com o médico. | Bom dia, posso agendar um check-up?"),
      (1, "Claro. Pode ser na {day} às {time}? | O primeiro horário livre é na {day} às {time}."),
      (0, "Pode ser. | Não tem nada mais cedo? | Na {day} eu consigo."),
      (1, "Então fica marcado para {day}. Qual a sua data de nascimento? | Anotado. Traga a carteirinha do convênio."),
      (0, "Claro. Obrigada. | Obrigada, até {day}.")]),
]


def gen_dialogue(rng, pt):
    if pt:
        a = pick(rng, PT_FIRST_F)
        b = pick(rng, PT_FIRST_M)
        name = f"{a} {pick(rng, PT_LAST)}"
    else:
        a = pick(rng, EN_FIRST[::2])
        b = pick(rng, EN_FIRST[1::2])
        name = f"{a} {pick(rng, EN_LAST)}"
    slots, turns = pick(rng, DIALOGUES_PT if pt else DIALOGUES_EN)
    fill = {k: pick(rng, v) for k, v in slots.items()}
    fill.update(name=name, room=rng.randint(101, 420), mins=rng.randint(3, 20), reais=rng.randint(9, 35),
                price=f"£{rng.randint(3, 12)}.{pick(rng, ['00', '20', '50', '80'])}")
    if rng.random() < 0.3:  # the conversation ends early
        turns = turns[:rng.randint(4, len(turns))]
    speakers = (a, b)
    lines, last = [], 0
    for who, t in turns:
        opts = t.lstrip("~").split(" | ")
        # "~" ties the phrasing to the previous turn's (an answer that fits its question)
        last = last % len(opts) if t.startswith("~") else rng.randrange(len(opts))
        lines.append(f"{speakers[who]}: {opts[last].format(**fill)}")
    return "\n".join(lines)


CAPITALS = [("France", "França", "Paris"), ("Japan", "Japão", "Tokyo|Tóquio"), ("Brazil", "Brasil", "Brasília"),
            ("Portugal", "Portugal", "Lisbon|Lisboa"), ("Argentina", "Argentina", "Buenos Aires"),
            ("Canada", "Canadá", "Ottawa"), ("Egypt", "Egito", "Cairo"), ("Kenya", "Quênia", "Nairobi"),
            ("Peru", "Peru", "Lima"), ("Norway", "Noruega", "Oslo"), ("Italy", "Itália", "Rome|Roma"),
            ("Mexico", "México", "Mexico City|Cidade do México"), ("Chile", "Chile", "Santiago"),
            ("Spain", "Espanha", "Madrid"), ("Germany", "Alemanha", "Berlin|Berlim")]
HOWTO_EN = [("boil an egg", ["Put the egg in a small pot of cold water.", "Bring the water to a boil.",
                              "Cook for 7 minutes for a firm yolk.", "Cool the egg in cold water before peeling."]),
            ("plant a seed", ["Fill a small pot with moist soil.", "Press the seed about one centimetre deep.",
                               "Keep the pot in a bright place.", "Water a little every two days."]),
            ("write a formal email", ["Start with a greeting and the person's name.", "State the purpose in the first sentence.",
                                       "Keep each paragraph short.", "End with a polite closing and your full name."])]
HOWTO_PT = [("cozinhar um ovo", ["Coloque o ovo numa panela pequena com água fria.", "Leve a água à fervura.",
                                  "Cozinhe por 7 minutos para a gema ficar firme.", "Esfrie o ovo em água fria antes de descascar."]),
            ("plantar uma semente", ["Encha um vaso pequeno com terra úmida.", "Enterre a semente a cerca de um centímetro.",
                                      "Deixe o vaso num lugar claro.", "Regue um pouco a cada dois dias."]),
            ("escrever um e-mail formal", ["Comece com uma saudação e o nome da pessoa.", "Diga o objetivo na primeira frase.",
                                            "Mantenha os parágrafos curtos.", "Termine com uma despedida cordial e seu nome completo."])]


def gen_qa_item(rng, pt):
    kind = rng.randrange(4)
    if kind == 0:
        en, ptn, capital = pick(rng, CAPITALS)
        capital = capital.split("|")[-1 if pt else 0]
        return ((f"Pergunta: Qual é a capital de(a) {ptn}?".replace("de(a) ", "de "), f"Resposta: A capital de {ptn} é {capital}.") if pt
                else (f"Question: What is the capital of {en}?", f"Answer: The capital of {en} is {capital}."))
    if kind == 1:
        x, y = rng.randint(2, 99), rng.randint(2, 99)
        op = rng.randrange(3)
        sym, val = [("+", x + y), ("-", x - y), ("×", x * y)][op]
        return ((f"Pergunta: Quanto é {x} {sym} {y}?", f"Resposta: {x} {sym} {y} = {val}.") if pt
                else (f"Question: What is {x} {sym} {y}?", f"Answer: {x} {sym} {y} = {val}."))
    if kind == 2:
        km = rng.randint(1, 50)
        m = km * 1000
        return ((f"Pergunta: Quantos metros há em {km} quilômetro{'s' if km > 1 else ''}?", f"Resposta: {km} km equivalem a {m:,} metros.".replace(",", ".")) if pt
                else (f"Question: How many metres are in {km} kilometre{'s' if km > 1 else ''}?", f"Answer: {km} km is {m:,} metres."))
    task, steps = pick(rng, HOWTO_PT if pt else HOWTO_EN)
    body = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(steps))
    return ((f"Instrução: Explique como {task}.", f"Resposta:\n{body}") if pt
            else (f"Instruction: Explain how to {task}.", f"Response:\n{body}"))


def gen_qa(rng, pt):
    parts = []
    while True:
        q, a = gen_qa_item(rng, pt)
        parts.append(f"{q}\n{a}")
        text = "\n\n".join(parts)
        if len(text) >= 100 and (len(parts) >= 2 or rng.random() < 0.5):
            return text


def gen_general(rows, seed):
    rng = random.Random(seed * 1_000_003 + 1)
    out, seen = [], set()
    while len(out) < rows:
        pt = rng.random() < 0.5
        kind = rng.random()
        if kind < 0.3:
            text = gen_prose_pt(rng) if pt else gen_prose_en(rng)
        elif kind < 0.38:
            text = gen_town(rng, pt)
        elif kind < 0.45:
            text = gen_diary(rng, pt)
        elif kind < 0.65:
            text = gen_record(rng, pt)
        elif kind < 0.85:
            text = gen_dialogue(rng, pt)
        else:
            text = gen_qa(rng, pt)
        if 100 <= len(text) <= 600 and text not in seen:
            seen.add(text)
            out.append({"text": text})
    return out


# --------------------------------------------------------------------------------------------
# Set 2: general-domain OCR (generic documents, English and Portuguese)
# --------------------------------------------------------------------------------------------

COMPANIES_EN = ["Northwind Supplies Ltd", "Harbour Print Co.", "Greenleaf Catering", "Baker & Sons Hardware",
                "Bluebell Office Services", "Riverside Garden Centre", "Atlas Electrical", "Kingsway Stationers"]
COMPANIES_PT = ["Papelaria Central Ltda.", "Gráfica Horizonte", "Buffet Sabor da Terra", "Ferragens Irmãos Rocha",
                "Distribuidora Boa Vista", "Materiais de Construção São Jorge", "Elétrica Progresso",
                "Padaria e Confeitaria Estrela"]
ITEMS_EN = [("A4 paper, box of 5 reams", 24), ("Ink cartridge, black", 31), ("Stapler", 9), ("Desk chair", 89),
            ("LED bulb, pack of 4", 12), ("Extension cable 5 m", 15), ("Ring binder", 3), ("Whiteboard markers", 6),
            ("Paint roller", 7), ("Wall clock", 18), ("Filing cabinet", 140), ("Coffee beans 1 kg", 16)]
ITEMS_PT = [("Papel A4, caixa com 5 resmas", 129), ("Cartucho de tinta preto", 89), ("Grampeador", 32),
            ("Cadeira de escritório", 459), ("Lâmpada LED, pacote com 4", 39), ("Extensão elétrica 5 m", 45),
            ("Pasta fichário", 18), ("Marcador para quadro branco", 12), ("Rolo de pintura", 24),
            ("Relógio de parede", 65), ("Arquivo de aço", 790), ("Café em grãos 1 kg", 58)]
RECIPES_EN = [("Pancakes", ["200 g flour", "2 eggs", "300 ml milk", "1 tbsp sugar", "a pinch of salt"],
               ["Whisk the eggs with the milk.", "Add the flour, sugar and salt and mix until smooth.",
                "Rest the batter for 10 minutes.", "Cook small ladles of batter in a hot pan until golden on both sides."]),
              ("Tomato soup", ["1 kg ripe tomatoes", "1 onion", "2 cloves of garlic", "500 ml vegetable stock", "olive oil"],
               ["Fry the chopped onion and garlic in olive oil.", "Add the tomatoes and cook for 15 minutes.",
                "Pour in the stock and simmer for another 10 minutes.", "Blend until smooth and season to taste."]),
              ("Lemon cake", ["3 eggs", "180 g sugar", "200 g flour", "100 ml oil", "juice and zest of 2 lemons", "1 tsp baking powder"],
               ["Beat the eggs with the sugar until pale.", "Add the oil, lemon juice and zest.",
                "Fold in the flour and baking powder.", "Bake at 180 °C for 35 minutes."])]
RECIPES_PT = [("Bolo de fubá", ["3 ovos", "2 xícaras de fubá", "1 xícara de farinha de trigo", "2 xícaras de açúcar",
                                "1 xícara de leite", "1/2 xícara de óleo", "1 colher de sopa de fermento"],
               ["Bata no liquidificador os ovos, o leite, o óleo e o açúcar.", "Junte o fubá e a farinha e bata mais um pouco.",
                "Acrescente o fermento e misture com uma colher.", "Asse em forno a 180 °C por cerca de 40 minutos."]),
              ("Arroz de forno", ["3 xícaras de arroz cozido", "200 g de presunto", "200 g de mussarela", "1 lata de milho",
                                  "1 caixa de creme de leite"],
               ["Misture o arroz com o creme de leite.", "Acrescente o presunto picado e o milho.",
                "Coloque numa travessa e cubra com a mussarela.", "Leve ao forno até gratinar."]),
              ("Feijão tropeiro", ["500 g de feijão cozido", "200 g de bacon", "2 ovos", "1 xícara de farinha de mandioca",
                                   "cebolinha a gosto"],
               ["Frite o bacon até dourar.", "Junte os ovos e mexa até cozinharem.",
                "Acrescente o feijão escorrido e a farinha aos poucos.", "Finalize com cebolinha picada."])]
NOTICES_EN = [("Water supply interruption", "Due to maintenance of the main pipe, the water supply on {street} will be interrupted on {date} from {h1} to {h2}. Residents are advised to store water in advance. We apologise for the inconvenience."),
              ("Lift out of service", "The lift in block {blk} will be out of service on {date} for its annual inspection. Please use the stairs. Deliveries should be arranged for another day."),
              ("Change of opening hours", "From {date}, the office will open from {h1} to {h2}, Monday to Friday. Requests received after closing time will be answered on the next working day."),
              ("Annual general meeting", "All members are invited to the annual general meeting on {date} at {h1} in the community hall. The agenda includes the approval of the accounts and the election of the new board.")]
NOTICES_PT = [("Interrupção no abastecimento de água", "Em razão de manutenção na rede principal, o abastecimento de água na {street} será interrompido no dia {date}, das {h1} às {h2}. Recomenda-se que os moradores reservem água com antecedência. Pedimos desculpas pelo transtorno."),
              ("Elevador em manutenção", "O elevador do bloco {blk} ficará fora de serviço no dia {date} para a vistoria anual. Favor utilizar as escadas. Mudanças e entregas devem ser agendadas para outra data."),
              ("Novo horário de atendimento", "A partir de {date}, a secretaria funcionará das {h1} às {h2}, de segunda a sexta-feira. Solicitações recebidas após o expediente serão respondidas no dia útil seguinte."),
              ("Assembleia geral ordinária", "Ficam convocados todos os condôminos para a assembleia geral ordinária no dia {date}, às {h1}, no salão de festas. A pauta inclui a aprovação das contas e a eleição do novo síndico.")]
STREETS_EN = ["Station Road", "Church Lane", "Mill Street", "Victoria Avenue", "Park Road", "High Street", "Queen's Walk"]
STREETS_PT = ["Rua das Flores", "Rua XV de Novembro", "Avenida Brasil", "Rua Sete de Setembro", "Rua Tiradentes",
              "Avenida Getúlio Vargas", "Rua Dom Pedro II", "Rua São Bento", "Avenida Paulista", "Rua da Consolação",
              "Rua Barão do Rio Branco", "Avenida Santos Dumont", "Rua Marechal Deodoro", "Rua Amazonas",
              "Avenida Afonso Pena", "Rua Voluntários da Pátria", "Rua Bahia", "Rua Padre Anchieta",
              "Avenida JK", "Rua Rui Barbosa", "Rua Duque de Caxias", "Avenida Independência"]


def _hm(rng, lo=6, hi=20):
    return f"{rng.randint(lo, hi)}h{pick(rng, ['00', '15', '30', '45'])}"


def _hm_en(rng, lo=6, hi=20):
    return f"{rng.randint(lo, hi):02d}:{pick(rng, ['00', '15', '30', '45'])}"


def ocr_letter(rng, pt):
    d = rand_date(rng, 2015, 2025)
    if pt:
        a = f"{pick(rng, PT_FIRST_F + PT_FIRST_M)} {pick(rng, PT_LAST)}"
        b = f"{pick(rng, PT_FIRST_F + PT_FIRST_M)} {pick(rng, PT_LAST)}"
        body = pick(rng, [
            "Escrevo para confirmar o recebimento da sua carta e agradecer pelas informações enviadas. Conforme combinado, a reunião ficou marcada para a próxima semana, na sede da associação.",
            "Venho por meio desta solicitar a segunda via do boleto referente ao mês passado, que não chegou ao meu endereço. Peço que o documento seja enviado também por e-mail.",
            "Gostaria de informar que, a partir do próximo mês, mudarei de endereço. Peço a gentileza de atualizar o cadastro para que as correspondências continuem chegando normalmente.",
            "Agradeço o convite para a inauguração da nova biblioteca. Infelizmente não poderei comparecer, pois estarei viajando a trabalho nessa data."])
        return [f"{pick(rng, PT_TOWNS)}, {date_pt(d)}.", "", f"Prezado(a) {b},", "", body, "",
                pick(rng, ["Atenciosamente,", "Cordialmente,", "Um abraço,"]), a]
    a = f"{pick(rng, EN_FIRST)} {pick(rng, EN_LAST)}"
    b = f"{pick(rng, ['Mr', 'Ms', 'Mrs', 'Dr'])} {pick(rng, EN_LAST)}"
    body = pick(rng, [
        "I am writing to confirm that we received your letter and to thank you for the information. As agreed, the meeting will take place next week at the association's office.",
        "I would like to request a copy of last month's invoice, which never reached my address. Please also send the document by email if possible.",
        "Please note that from next month I will be moving to a new address. I would be grateful if you could update your records so that my post continues to arrive.",
        "Thank you for the invitation to the opening of the new library. Unfortunately I will not be able to attend, as I will be travelling for work on that date."])
    return [f"{pick(rng, EN_TOWNS)}, {date_en(d)}", "", f"Dear {b},", "", body, "",
            pick(rng, ["Yours sincerely,", "Kind regards,", "Best wishes,"]), a]


def ocr_invoice(rng, pt):
    d = rand_date(rng, 2018, 2025)
    items = sample(rng, ITEMS_PT if pt else ITEMS_EN, rng.randint(2, 4))
    lines = []
    total = 0
    for name, price in items:
        q = rng.randint(1, 6)
        total += q * price
        lines.append(f"{q} x {name} — {money_pt(q * price) if pt else '£' + format(q * price, '.2f')}")
    if pt:
        return ([pick(rng, COMPANIES_PT), f"Nota de venda nº {rng.randint(1000, 99999)}", f"Data: {date_num(d)}",
                 f"Cliente: {pick(rng, PT_FIRST_F + PT_FIRST_M)} {pick(rng, PT_LAST)}"] + lines +
                [f"Total: {money_pt(total)}", f"Forma de pagamento: {pick(rng, ['Pix', 'boleto bancário', 'cartão de crédito', 'dinheiro'])}",
                 f"Vencimento: {date_num(add_days(d, 30))}"])
    return ([pick(rng, COMPANIES_EN), f"Invoice No. {rng.randint(1000, 99999)}", f"Date: {date_en(d)}",
             f"Bill to: {pick(rng, EN_FIRST)} {pick(rng, EN_LAST)}"] + lines +
            [f"Total due: £{total:.2f}", f"Payment terms: {pick(rng, ['30 days', '14 days', 'on receipt'])}",
             f"Bank transfer reference: INV-{rng.randint(10000, 99999)}"])


def ocr_notice(rng, pt):
    d = rand_date(rng, 2018, 2025)
    title, body = pick(rng, NOTICES_PT if pt else NOTICES_EN)
    h1, h2 = sorted([rng.randint(7, 12), rng.randint(13, 19)])
    fill = dict(street=pick(rng, STREETS_PT if pt else STREETS_EN), date=date_num(d) if pt else date_en(d),
                blk=pick(rng, "ABCDE"), h1=f"{h1}h" if pt else f"{h1}:00", h2=f"{h2}h" if pt else f"{h2}:00")
    sign = pick(rng, ["A Administração", "A Diretoria", "Síndico"] if pt else ["The Management", "The Committee", "Facilities Office"])
    return [("AVISO" if pt else "NOTICE"), title.upper(), "", body.format(**fill), "", sign]


def ocr_recipe(rng, pt):
    title, ingr, steps = pick(rng, RECIPES_PT if pt else RECIPES_EN)
    serves = rng.randint(2, 8)
    who = (f"Receita de {pick(rng, PT_FIRST_F)} {pick(rng, PT_LAST)}" if pt
           else f"From the kitchen of {pick(rng, EN_FIRST)} {pick(rng, EN_LAST)}")
    mins = rng.randint(3, 12) * 5
    head = [title, who, (f"Rendimento: {serves} porções — Tempo: {mins} minutos" if pt
                         else f"Serves {serves} — Time: {mins} minutes"),
            ("Ingredientes:" if pt else "Ingredients:")]
    ing = [f"- {x}" for x in ingr]
    st = [("Modo de preparo:" if pt else "Method:")] + [f"{i + 1}. {s}" for i, s in enumerate(steps)]
    return head + ing + st


def ocr_timetable(rng, pt):
    towns = sample(rng, PT_TOWNS if pt else EN_TOWNS, rng.randint(3, 5))
    start = rng.randint(5 * 60, 18 * 60)
    n_runs = rng.randint(2, 4)
    gap = rng.randint(30, 120)
    legs = [rng.randint(15, 60) for _ in towns[1:]]
    lines = [(f"Horário de ônibus — Linha {rng.randint(100, 999)}" if pt else f"Bus timetable — Route {rng.randint(10, 99)}"),
             (f"Válido a partir de {date_num(rand_date(rng, 2019, 2025))}" if pt else "Monday to Friday")]
    for i, t in enumerate(towns):
        offs = sum(legs[:i])
        times = []
        for r in range(n_runs):
            m = (start + r * gap + offs) % (24 * 60)
            times.append(f"{m // 60:02d}:{m % 60:02d}")
        lines.append(f"{t}: " + "  ".join(times))
    lines.append("Sujeito a alterações sem aviso prévio." if pt else "Times may change on public holidays.")
    return lines


def ocr_receipt(rng, pt):
    d = rand_date(rng, 2019, 2025)
    items = sample(rng, ITEMS_PT if pt else ITEMS_EN, rng.randint(1, 4))
    total = sum(p for _, p in items)
    if pt:
        paid = total + pick(rng, [0, 0, 10, 50, 100])
        lines = [pick(rng, COMPANIES_PT), "CUPOM NÃO FISCAL", f"{date_num(d)} {rng.randint(8, 21):02d}:{rng.randint(0, 59):02d}"]
        lines += [f"{n} {money_pt(p)}" for n, p in items]
        lines += [f"TOTAL {money_pt(total)}", f"Dinheiro {money_pt(paid)}", f"Troco {money_pt(paid - total)}",
                  "Obrigado pela preferência!"]
    else:
        paid = total + pick(rng, [0, 0, 5, 20, 50])
        lines = [pick(rng, COMPANIES_EN), "RECEIPT", f"{date_iso(d)} {rng.randint(8, 21):02d}:{rng.randint(0, 59):02d}"]
        lines += [f"{n} £{p:.2f}" for n, p in items]
        lines += [f"TOTAL £{total:.2f}", f"Cash £{paid:.2f}", f"Change £{paid - total:.2f}", "Thank you for shopping with us!"]
    return lines


def ocr_memo(rng, pt):
    d = rand_date(rng, 2018, 2025)
    if pt:
        dept = sample(rng, ["Diretoria", "Recursos Humanos", "Financeiro", "Compras", "Manutenção", "Todos os setores"], 2)
        subj, body = pick(rng, [
            ("Férias coletivas", "Informamos que as férias coletivas terão início em {d1} e término em {d2}. Os pedidos pendentes devem ser concluídos até a véspera."),
            ("Reunião de planejamento", "Fica agendada reunião de planejamento para {d1}, às 9h, na sala 3. Solicitamos que cada setor traga o relatório do trimestre."),
            ("Troca de senhas", "Por motivo de segurança, todas as senhas do sistema deverão ser trocadas até {d1}. Em caso de dúvida, procure o suporte técnico."),
            ("Uso do estacionamento", "A partir de {d1}, o estacionamento será reservado aos veículos cadastrados. O cadastro pode ser feito na portaria até {d2}.")])
        return ["MEMORANDO INTERNO", f"Nº {rng.randint(1, 300)}/{d[0]}", f"De: {dept[0]}", f"Para: {dept[1]}",
                f"Data: {date_num(d)}", f"Assunto: {subj}", "",
                body.format(d1=date_num(add_days(d, rng.randint(5, 20))), d2=date_num(add_days(d, rng.randint(25, 40)))),
                "", f"{pick(rng, PT_FIRST_F + PT_FIRST_M)} {pick(rng, PT_LAST)}"]
    dept = sample(rng, ["Management", "Human Resources", "Finance", "Purchasing", "Maintenance", "All staff"], 2)
    subj, body = pick(rng, [
        ("Office closure", "Please note that the office will be closed from {d1} to {d2}. Pending orders must be completed before the closure."),
        ("Planning meeting", "A planning meeting is scheduled for {d1} at 9:00 in room 3. Each team is asked to bring its quarterly report."),
        ("Password change", "For security reasons, all system passwords must be changed by {d1}. Contact the help desk if you need assistance."),
        ("Car park", "From {d1}, the car park will be reserved for registered vehicles. Registration is open at reception until {d2}.")])
    return ["MEMO", f"From: {dept[0]}", f"To: {dept[1]}", f"Date: {date_en(d)}", f"Subject: {subj}", "",
            body.format(d1=date_en(add_days(d, rng.randint(5, 20))), d2=date_en(add_days(d, rng.randint(25, 40)))),
            "", f"{pick(rng, EN_FIRST)} {pick(rng, EN_LAST)}"]


OCR_KINDS = [ocr_letter, ocr_invoice, ocr_notice, ocr_recipe, ocr_timetable, ocr_receipt, ocr_memo]


def ocr_row(rng):
    while True:
        pt = rng.random() < 0.5
        lines = pick(rng, OCR_KINDS)(rng, pt)
        clean = "\n".join(lines)
        if 150 <= len(clean) <= 700:
            break
    noisy = noisy_render(rng, lines, pt)
    return {"prompt": f"{OCR_INSTRUCTION}\n{noisy}", "completion": clean}


def gen_ocr(rows, seed):
    rng = random.Random(seed * 1_000_003 + 2)
    seen = set()
    splits = {}
    for name, n in (("train", rows), ("validation", max(1, rows // 10))):
        out = []
        while len(out) < n:
            row = ocr_row(rng)
            if row["completion"] in seen:  # validation never repeats a train page
                continue
            seen.add(row["completion"])
            out.append(row)
        splits[name] = out
    return splits


# --------------------------------------------------------------------------------------------
# Set 3: Brazilian-Portuguese legal and administrative records (structured JSON pages)
# --------------------------------------------------------------------------------------------

# (city, UF, first and last 5-digit CEP prefix of the city)
CITIES = [("São Paulo", "SP", 1000, 5999), ("Campinas", "SP", 13000, 13139), ("Rio de Janeiro", "RJ", 20000, 23799),
          ("Belo Horizonte", "MG", 30000, 31999), ("Curitiba", "PR", 80000, 82999), ("Porto Alegre", "RS", 90000, 91999),
          ("Salvador", "BA", 40000, 42499), ("Recife", "PE", 50000, 52999), ("Fortaleza", "CE", 60000, 61599),
          ("Goiânia", "GO", 74000, 74899), ("Florianópolis", "SC", 88000, 88099), ("Belém", "PA", 66000, 66999),
          ("Manaus", "AM", 69000, 69099), ("Natal", "RN", 59000, 59139), ("Vitória", "ES", 29000, 29099),
          ("Ribeirão Preto", "SP", 14000, 14114), ("Londrina", "PR", 86000, 86099), ("Uberlândia", "MG", 38400, 38415),
          ("Juiz de Fora", "MG", 36000, 36099), ("São Luís", "MA", 65000, 65099), ("Campo Grande", "MS", 79000, 79129),
          ("Cuiabá", "MT", 78000, 78109), ("João Pessoa", "PB", 58000, 58099), ("Teresina", "PI", 64000, 64099),
          ("Maceió", "AL", 57000, 57099), ("Aracaju", "SE", 49000, 49099), ("Santos", "SP", 11000, 11099),
          ("Sorocaba", "SP", 18000, 18109), ("Niterói", "RJ", 24000, 24399), ("Joinville", "SC", 89200, 89239)]
BAIRROS = ["Centro", "Jardim América", "Vila Nova", "Boa Vista", "Santa Cruz", "São José", "Jardim Paulista",
           "Bela Vista", "Vila Mariana", "Cidade Nova", "Parque das Nações", "Santo Antônio", "Jardim Europa",
           "Alto da Glória", "Barra Funda", "Cambuí", "Liberdade", "Floresta", "Industrial", "Vila Rica",
           "Jardim Botânico", "Ponta Verde", "Aldeota", "Boqueirão", "Tijuca", "Savassi", "Meireles", "Pituba"]
PROFESSIONS = [("professor", "professora"), ("engenheiro civil", "engenheira civil"), ("advogado", "advogada"),
               ("comerciante", "comerciante"), ("médico", "médica"), ("motorista", "motorista"),
               ("enfermeiro", "enfermeira"), ("contador", "contadora"), ("aposentado", "aposentada"),
               ("servidor público", "servidora pública"), ("autônomo", "autônoma"), ("agricultor", "agricultora"),
               ("vendedor", "vendedora"), ("empresário", "empresária"), ("estudante", "estudante"),
               ("analista de sistemas", "analista de sistemas"), ("cozinheiro", "cozinheira"),
               ("eletricista", "eletricista"), ("farmacêutico", "farmacêutica"), ("administrador", "administradora")]
CIVIL = [("solteiro", "solteira"), ("casado", "casada"), ("divorciado", "divorciada"), ("viúvo", "viúva")]
COMPANY_WORDS = ["Horizonte", "Aliança", "Progresso", "Nova Era", "Bandeirantes", "Serra Azul", "Primavera",
                 "Atlântico", "Cruzeiro", "Vale Verde", "Pioneira", "Santa Clara", "Estrela do Sul", "Ipê Amarelo"]
COMPANY_KINDS = ["Construtora", "Comércio de Materiais", "Serviços de Limpeza", "Contabilidade", "Tecnologia",
                 "Transportes", "Manutenção Predial", "Engenharia", "Alimentos", "Segurança Patrimonial"]
HOSPITALS = ["Hospital Santa Casa de Misericórdia", "Hospital São Lucas", "Maternidade Santa Mônica",
             "Hospital Municipal", "Hospital Regional", "Hospital Santa Isabel", "Maternidade Escola"]
CAUSES = ["insuficiência respiratória aguda", "infarto agudo do miocárdio", "acidente vascular cerebral",
          "pneumonia", "insuficiência cardíaca congestiva", "falência múltipla de órgãos"]
CEMETERIES = ["Cemitério Municipal", "Cemitério da Saudade", "Cemitério São João Batista", "Cemitério da Paz",
              "Cemitério Parque das Flores"]
REGIMES = ["comunhão parcial de bens", "comunhão universal de bens", "separação total de bens",
           "participação final nos aquestos"]
ORDINALS = ["1º", "2º", "3º", "4º", "5º", "6º", "7º", "8º", "9º", "10º", "11º", "12º"]
SELO_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def cpf_digits(base):
    s = sum(d * w for d, w in zip(base, range(10, 1, -1)))
    d1 = (s * 10) % 11 % 10
    s = sum(d * w for d, w in zip(base + [d1], range(11, 1, -1)))
    d2 = (s * 10) % 11 % 10
    return base + [d1, d2]


def cnpj_digits(base):
    w1 = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    w2 = [6] + w1
    r = sum(d * w for d, w in zip(base, w1)) % 11
    d1 = 0 if r < 2 else 11 - r
    r = sum(d * w for d, w in zip(base + [d1], w2)) % 11
    d2 = 0 if r < 2 else 11 - r
    return base + [d1, d2]


def fmt_cpf(d):
    s = "".join(map(str, d))
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{s[9:]}"


def fmt_cnpj(d):
    s = "".join(map(str, d))
    return f"{s[:2]}.{s[2:5]}.{s[5:8]}/{s[8:12]}-{s[12:]}"


class Registry:
    """Every person, CPF, CNPJ and seal number drawn in one run is unique, so the validation
    and test splits never share a person or a number with train."""

    def __init__(self):
        self.names, self.cpfs, self.cnpjs, self.codes = set(), set(), set(), set()
        self.journal = []  # (set, value) in order of drawing, to undo a rejected page

    def _add(self, bucket, v):
        bucket.add(v)
        self.journal.append((bucket, v))
        return v

    def mark(self):
        return len(self.journal)

    def undo(self, mark):
        while len(self.journal) > mark:
            bucket, v = self.journal.pop()
            bucket.discard(v)

    def cpf(self, rng):
        while True:
            base = [rng.randint(0, 9) for _ in range(9)]
            if len(set(base)) == 1:
                continue
            v = fmt_cpf(cpf_digits(base))
            if v not in self.cpfs:
                return self._add(self.cpfs, v)

    def cnpj(self, rng):
        while True:
            base = [rng.randint(0, 9) for _ in range(8)] + [0, 0, 0, rng.choice([1, 1, 1, 2])]
            v = fmt_cnpj(cnpj_digits(base))
            if v not in self.cnpjs:
                return self._add(self.cnpjs, v)

    def code(self, rng, fmt):
        while True:
            v = fmt(rng)
            if v not in self.codes:
                return self._add(self.codes, v)

    def name(self, rng, fem, surnames=None):
        while True:
            first = pick(rng, PT_FIRST_F if fem else PT_FIRST_M)
            if rng.random() < 0.25:
                second = pick(rng, PT_FIRST_F if fem else PT_FIRST_M)
                if second != first:
                    first += " " + second
            if surnames is None:
                last = sample(rng, PT_LAST, rng.randint(1, 2))
                if rng.random() < 0.2:
                    last = [surname_particle(last[0]) + " " + last[0]] + last[1:]
                last = " ".join(last)
            else:
                last = surnames
            full = f"{first} {last}"
            if full not in self.names:
                return self._add(self.names, full)


def de(c):
    """The city with the preposition Portuguese gives it: "do Rio de Janeiro", "de Campinas"."""
    return ("do " if c[0] in ("Rio de Janeiro", "Recife") else "de ") + c[0]


def surname_particle(name):
    if name in ("Silva", "Costa", "Rocha", "Cunha", "Conceição", "Cruz", "Luz", "Paz", "Mata", "Fonseca"):
        return "da"
    if name in ("Santos", "Reis", "Anjos", "Passos", "Prazeres", "Ramos"):
        return "dos"
    return "de"


def address(rng, city=None):
    c = city or pick(rng, CITIES)
    cep = rng.randint(c[2], c[3])
    extra = f", apto. {rng.randint(1, 24)}{rng.randint(1, 4):02d}" if rng.random() < 0.3 else ""
    return (f"{pick(rng, STREETS_PT)}, nº {rng.randint(1, 3999)}{extra}, bairro {pick(rng, BAIRROS)}, "
            f"{c[0]}/{c[1]}, CEP {cep:05d}-{rng.randint(0, 999):03d}")


def person(rng, reg, fem=None, city=None, adult=True):
    fem = rng.random() < 0.5 if fem is None else fem
    i = 1 if fem else 0
    c = city or pick(rng, CITIES)
    return {"fem": fem, "name": reg.name(rng, fem), "cpf": reg.cpf(rng),
            "rg": f"{rng.randint(1, 99)}.{rng.randint(100, 999)}.{rng.randint(100, 999)}-{rng.choice('0123456789X')}",
            "org": f"SSP/{c[1]}", "prof": pick(rng, PROFESSIONS)[i], "civil": pick(rng, CIVIL)[i],
            "nat": ("brasileiro", "brasileira")[i], "addr": address(rng, c), "city": c}


def g(p, m, f):
    return f if p["fem"] else m


def qualify(p, civil=True):
    """The qualification clause of a party, as notaries write it."""
    parts = [p["name"], p["nat"]]
    if civil:
        parts.append(p["civil"])
    parts.append(p["prof"])
    parts.append(f"portador{g(p, '', 'a')} da cédula de identidade RG nº {p['rg']} {p['org']}")
    parts.append(f"inscrit{g(p, 'o', 'a')} no CPF sob o nº {p['cpf']}")
    parts.append(f"residente e domiciliad{g(p, 'o', 'a')} na {p['addr']}")
    return ", ".join(parts)


def company(rng, reg, city=None):
    c = city or pick(rng, CITIES)
    name = f"{pick(rng, COMPANY_KINDS)} {pick(rng, COMPANY_WORDS)} {pick(rng, ['Ltda.', 'Ltda.', 'EIRELI', 'S.A.', 'ME'])}"
    return {"name": name, "cnpj": reg.cnpj(rng), "addr": address(rng, c), "city": c}


def selo(rng, reg):
    return reg.code(rng, lambda r: "".join(r.choice(SELO_LETTERS) for _ in range(3)) + f"{r.randint(0, 99999):05d}")


def cartorio_notas(rng, c):
    return pick(rng, [f"Cartório do {pick(rng, ORDINALS[:6])} Ofício de Notas {de(c)}",
                      f"{pick(rng, ORDINALS[:9])} Tabelionato de Notas {de(c)}/{c[1]}"])


def cartorio_civil(rng, c):
    return pick(rng, [f"Oficial de Registro Civil das Pessoas Naturais do {pick(rng, ORDINALS)} Subdistrito {de(c)}/{c[1]}",
                      f"Cartório do {pick(rng, ORDINALS[:4])} Ofício de Registro Civil {de(c)}/{c[1]}",
                      f"Registro Civil das Pessoas Naturais — {c[0]}/{c[1]}"])


def oficial(rng, reg):
    fem = rng.random() < 0.5
    return reg.name(rng, fem), ("Oficiala de Registro" if fem else "Oficial de Registro") if rng.random() < 0.5 else \
        ("Escrevente Autorizada" if fem else "Escrevente Autorizado")


def footer(rng, reg, kind, c, total=1, page=1):
    """Notaries and registries print the digital seal and fees; a private instrument carries a
    seal when a firm was recognised; a public office prints its address or an e-signature code."""
    parts = [f"Página {page} de {total}"]
    if kind == "cartorio" or (kind == "private" and rng.random() < 0.5):
        parts.append(f"Selo digital: {selo(rng, reg)}")
        if kind == "cartorio" and rng.random() < 0.4:
            parts.append(f"Emolumentos: R$ {rng.randint(20, 180)},{rng.randint(0, 99):02d}")
    elif kind == "admin":
        r = rng.random()
        if r < 0.4:
            parts.append(f"{pick(rng, ['Paço Municipal', 'Centro Administrativo', 'Sede da Secretaria'])}: {address(rng, c)}")
        elif r < 0.8:
            parts.append(f"Documento assinado eletronicamente. Código verificador {rng.randint(1000000, 9999999)}, "
                         f"CRC {selo(rng, reg)}")
    elif kind == "private" and rng.random() < 0.4:
        parts.append("Rubricas das partes: ____ ____")
    rng.shuffle(parts)
    return "\n".join(parts) if rng.random() < 0.6 else " — ".join(parts)


def firma_stamp(rng, c, who, d):
    cart = cartorio_notas(rng, c).upper()
    how = pick(rng, ["por semelhança", "por autenticidade", "por semelhança, com valor econômico"])
    return (f"{cart} — RECONHEÇO A FIRMA de {who.upper()} {how}. {c[0]}, {date_num(d)}. "
            f"Em testemunho da verdade.")


def margin_notes(rng, reg, c, d, signers, stamp_prob=0.6, extra=()):
    notes = []
    if rng.random() < stamp_prob and signers:
        notes.append(firma_stamp(rng, c, pick(rng, signers), add_days(d, rng.randint(0, 3))))
    for s in signers:
        if rng.random() < 0.55:
            notes.append(f"Assinado: {s}")
    for e in extra:
        if rng.random() < 0.6:
            notes.append(e)
    if rng.random() < 0.15:
        notes.append(f"Rubrica: {'.'.join(w[0] for w in pick(rng, signers).split() if w[0].isupper())}." if signers else "Rubrica ilegível")
    rng.shuffle(notes)
    return notes


def livro_folha(rng, letter):
    return f"Livro {letter}-{rng.randint(1, 480)}, folha {rng.randint(1, 300)}{pick(rng, ['', 'v', ''])}, termo nº {rng.randint(100, 99999)}"


def matricula(rng):
    return (f"{rng.randint(100000, 999999)} 01 55 {rng.randint(1990, 2025)} {rng.randint(1, 3)} "
            f"{rng.randint(0, 99999):05d} {rng.randint(1, 300):03d} {rng.randint(0, 9999999):07d}-{rng.randint(10, 99)}")


def doc_nascimento(rng, reg):
    c = pick(rng, CITIES)
    birth = rand_date(rng, 1950, 2024)
    fem = rng.random() < 0.5
    father = person(rng, reg, False, c)
    mother = person(rng, reg, True, c)
    child_last = father["name"].split()[-1]
    child = reg.name(rng, fem, surnames=f"{mother['name'].split()[-1]} {child_last}")
    issued = rand_date(rng, max(birth[0], 2010), 2025)
    off, cargo = oficial(rng, reg)
    header = f"REPÚBLICA FEDERATIVA DO BRASIL\nREGISTRO CIVIL DAS PESSOAS NATURAIS\n{cartorio_civil(rng, c)}\nCERTIDÃO DE NASCIMENTO"
    lines = [f"Nome: {child}", f"CPF: {reg.cpf(rng)}", f"Matrícula: {matricula(rng)}",
             f"Data de nascimento: {date_pt(birth)} ({date_num(birth)})", f"Hora: {_hm(rng, 0, 23)}",
             f"Local de nascimento: {pick(rng, HOSPITALS)}, {c[0]}/{c[1]}",
             f"Sexo: {'feminino' if fem else 'masculino'}",
             f"Filiação: {father['name']} e {mother['name']}"]
    if rng.random() < 0.6:
        lines.append(f"Avós paternos: {reg.name(rng, False)} e {reg.name(rng, True)}")
        lines.append(f"Avós maternos: {reg.name(rng, False)} e {reg.name(rng, True)}")
    lines.append(f"Registro lavrado no {livro_folha(rng, 'A')}, em {date_num(add_days(birth, rng.randint(1, 40)))}.")
    lines.append(pick(rng, ["Observações: nada consta.", "Averbações: não há.", "Observações: registro feito dentro do prazo legal."]))
    lines.append(f"O conteúdo da certidão é verdadeiro. Dou fé. {c[0]}, {date_pt(issued)}.")
    lines.append(f"{off} — {cargo}")
    margin = margin_notes(rng, reg, c, issued, [off], stamp_prob=0.1,
                          extra=[f"Averbação: nada consta até {date_num(issued)}.", f"Conferido por {reg.name(rng, rng.random() < 0.5)}"])
    return header, margin, "cartorio", lines


def doc_casamento(rng, reg):
    c = pick(rng, CITIES)
    a = person(rng, reg, False, c)
    b = person(rng, reg, True, c)
    d = rand_date(rng, 1975, 2025)
    issued = rand_date(rng, max(d[0], 2012), 2025)
    off, cargo = oficial(rng, reg)
    new_b = b["name"] if rng.random() < 0.4 else b["name"] + " " + a["name"].split()[-1]
    header = f"REPÚBLICA FEDERATIVA DO BRASIL\n{cartorio_civil(rng, c)}\nCERTIDÃO DE CASAMENTO"
    lines = [f"Matrícula: {matricula(rng)}",
             f"Cônjuges: {a['name']}, CPF {a['cpf']}, nascido em {date_num(rand_date(rng, d[0] - 45, d[0] - 18))}, "
             f"natural de {pick(rng, CITIES)[0]}, filho de {reg.name(rng, False)} e {reg.name(rng, True)}; e "
             f"{b['name']}, CPF {b['cpf']}, nascida em {date_num(rand_date(rng, d[0] - 45, d[0] - 18))}, "
             f"natural de {pick(rng, CITIES)[0]}, filha de {reg.name(rng, False)} e {reg.name(rng, True)}.",
             f"Data do casamento: {date_pt(d)} ({date_num(d)}).",
             f"Regime de bens: {pick(rng, REGIMES)}.",
             f"Nome adotado pela cônjuge: {new_b}.",
             f"Registro lavrado no {livro_folha(rng, 'B')}.",
             f"O referido é verdade e dou fé. {c[0]}, {date_pt(issued)}.",
             f"{off} — {cargo}"]
    margin = margin_notes(rng, reg, c, issued, [off], stamp_prob=0.1,
                          extra=[pick(rng, ["Averbação: nada consta.", f"Averbação de divórcio em {date_num(add_days(d, rng.randint(400, 5000)))}, conforme mandado judicial."])])
    return header, margin, "cartorio", lines


def doc_obito(rng, reg):
    c = pick(rng, CITIES)
    p = person(rng, reg, None, c)
    d = rand_date(rng, 1990, 2025)
    age = rng.randint(40, 98)
    decl = person(rng, reg, None, c)
    off, cargo = oficial(rng, reg)
    header = f"REPÚBLICA FEDERATIVA DO BRASIL\n{cartorio_civil(rng, c)}\nCERTIDÃO DE ÓBITO"
    lines = [f"Nome: {p['name']}", f"CPF: {p['cpf']}", f"Matrícula: {matricula(rng)}",
             f"Sexo: {g(p, 'masculino', 'feminino')}; estado civil: {p['civil']}; idade: {age} anos; profissão: {p['prof']}.",
             f"Data e hora do falecimento: {date_pt(d)}, às {_hm(rng, 0, 23)}.",
             f"Local do falecimento: {pick(rng, HOSPITALS)}, {c[0]}/{c[1]}.",
             f"Causa da morte: {pick(rng, CAUSES)}.",
             f"Sepultamento: {pick(rng, CEMETERIES)} {de(c)}.",
             f"Declarante: {decl['name']}, CPF {decl['cpf']}.",
             pick(rng, [f"Deixou {words_pt(rng.randint(2, 6))} filhos maiores.", "Não deixou filhos.", "Deixou bens a inventariar.",
                        "Não deixou bens nem testamento conhecido."]),
             f"Registro lavrado no {livro_folha(rng, 'C')}, em {date_num(add_days(d, 1))}.",
             f"O referido é verdade e dou fé. {c[0]}, {date_pt(add_days(d, rng.randint(1, 300)))}.",
             f"{off} — {cargo}"]
    margin = margin_notes(rng, reg, c, d, [off], stamp_prob=0.1, extra=["Averbação: nada consta."])
    return header, margin, "cartorio", lines


def doc_negativa(rng, reg):
    c = pick(rng, CITIES)
    d = rand_date(rng, 2018, 2025)
    ctrl = "".join(rng.choice("0123456789ABCDEF") for _ in range(16))
    ctrl = ".".join(ctrl[i:i + 4] for i in range(0, 16, 4))
    if rng.random() < 0.6:
        co = company(rng, reg, c)
        who = f"{co['name']}, inscrita no CNPJ sob o nº {co['cnpj']}, com sede na {co['addr']}"
    else:
        p = person(rng, reg, None, c)
        who = f"{p['name']}, inscrit{g(p, 'o', 'a')} no CPF sob o nº {p['cpf']}, residente na {p['addr']}"
    kind = rng.randrange(2)
    if kind == 0:
        header = f"PREFEITURA MUNICIPAL {de(c).upper()}\nSecretaria Municipal da Fazenda\nCERTIDÃO NEGATIVA DE DÉBITOS MUNICIPAIS"
        lines = [f"Certidão nº {rng.randint(1, 99999):05d}/{d[0]}",
                 f"Certificamos, para os devidos fins, que até a presente data não constam débitos relativos a tributos "
                 f"municipais em nome de {who}.",
                 f"Inscrição municipal: {rng.randint(100000, 9999999)}.",
                 "Fica ressalvado o direito de a Fazenda Municipal cobrar quaisquer débitos que venham a ser apurados posteriormente.",
                 f"Esta certidão é válida por {pick(rng, ['60 (sessenta)', '90 (noventa)', '180 (cento e oitenta)'])} dias a contar da data de sua emissão.",
                 f"Emitida em {date_num(d)}, às {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}.",
                 f"Código de controle: {ctrl}"]
    else:
        header = "MINISTÉRIO DA FAZENDA\nSecretaria da Receita Federal do Brasil\nCERTIDÃO NEGATIVA DE DÉBITOS RELATIVOS AOS TRIBUTOS FEDERAIS E À DÍVIDA ATIVA DA UNIÃO"
        lines = [f"Nome/Razão social: {who.split(',')[0]}",
                 f"Ressalvado o direito de a Fazenda Nacional cobrar e inscrever quaisquer dívidas de responsabilidade do "
                 f"sujeito passivo acima identificado que vierem a ser apuradas, é certificado que não constam pendências "
                 f"em seu nome relativas a créditos tributários administrados pela Secretaria da Receita Federal do Brasil. "
                 f"Identificação: {who}.",
                 f"Certidão emitida gratuitamente com base na Portaria Conjunta RFB/PGFN nº {rng.randint(1, 2000)}, de {date_pt(rand_date(rng, 2014, d[0]))}.",
                 f"Emitida às {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} do dia {date_num(d)}.",
                 f"Válida até {date_num(add_days(d, 180))}.",
                 f"Código de controle da certidão: {ctrl}"]
    margin = []
    if rng.random() < 0.35:
        margin.append(f"Conferido com o original em {date_num(add_days(d, rng.randint(0, 20)))}. Assinado: {reg.name(rng, rng.random() < 0.5)}")
    if rng.random() < 0.2:
        margin.append(f"Protocolo nº {rng.randint(1000, 99999)}/{d[0]}")
    return header, margin, "admin", lines


PODERES = [
    "representá-l{o} perante repartições públicas federais, estaduais e municipais, autarquias e cartórios, podendo requerer, assinar e retirar documentos",
    "vender, ceder ou transferir o imóvel situado na {imovel}, podendo receber o preço, dar quitação, assinar escrituras e cumprir exigências",
    "movimentar contas bancárias, emitir e endossar cheques, solicitar saldos e extratos e efetuar pagamentos em nome d{o} outorgante",
    "representá-l{o} junto ao Departamento Estadual de Trânsito para transferência do veículo de placa {placa}, podendo assinar o recibo e pagar taxas",
    "receber benefícios previdenciários junto ao INSS, assinar requerimentos e prestar declarações",
]


def placa(rng):
    L = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return f"{rng.choice(L)}{rng.choice(L)}{rng.choice(L)}{rng.randint(0, 9)}{rng.choice(L)}{rng.randint(0, 9)}{rng.randint(0, 9)}"


def doc_procuracao(rng, reg):
    c = pick(rng, CITIES)
    a = person(rng, reg, None, c)
    b = person(rng, reg, None, c)
    d = rand_date(rng, 2015, 2025)
    publica = rng.random() < 0.5
    cart = cartorio_notas(rng, c)
    header = f"{cart.upper()}\nPROCURAÇÃO PÚBLICA" if publica else "PROCURAÇÃO"
    poder = pick(rng, PODERES).format(o=g(a, "o", "a"), imovel=address(rng, c), placa=placa(rng))
    lines = []
    if publica:
        lines.append(f"{livro_folha(rng, 'P')}. Saibam quantos este público instrumento de procuração virem que, "
                     f"{date_words_pt(d)}, neste {cart}, compareceu como outorgante:")
    lines += [f"OUTORGANTE: {qualify(a)}.",
              f"OUTORGAD{g(b, 'O', 'A')}: {qualify(b)}.",
              f"PODERES: para o fim especial de {poder}, podendo ainda substabelecer, no todo ou em parte, com ou sem reserva de poderes.",
              f"Validade: {pick(rng, ['1 (um) ano', '2 (dois) anos', 'por prazo indeterminado', '90 (noventa) dias'])}.",
              f"{c[0]}, {date_pt(d)}."]
    if not publica:
        lines.append(a["name"])
    extra = [f"Selo de autenticidade {selo(rng, reg)}"] if not publica else []
    margin = margin_notes(rng, reg, c, d, [a["name"]], stamp_prob=0.0 if publica else 0.75, extra=extra)
    return header, margin, ("cartorio" if publica else "private"), lines


def doc_locacao(rng, reg):
    c = pick(rng, CITIES)
    a = person(rng, reg, None, c)
    b = person(rng, reg, None, c)
    d = rand_date(rng, 2015, 2025)
    v = rng.randint(12, 90) * 50
    meses = pick(rng, [12, 24, 30, 36])
    header = "CONTRATO DE LOCAÇÃO DE IMÓVEL RESIDENCIAL" if rng.random() < 0.7 else "INSTRUMENTO PARTICULAR DE CONTRATO DE LOCAÇÃO"
    clauses = [f"LOCADOR{g(a, '', 'A')}: {qualify(a)}.",
               f"LOCATÁRI{g(b, 'O', 'A')}: {qualify(b, civil=rng.random() < 0.5)}.",
               f"CLÁUSULA PRIMEIRA — O objeto deste contrato é o imóvel residencial situado na {address(rng, c)}.",
               f"CLÁUSULA SEGUNDA — O prazo da locação é de {meses} ({words_pt(meses)}) meses, com início em {date_num(d)} e término em {date_num((d[0] + meses // 12, d[1], d[2]) if meses % 12 == 0 else add_days(d, meses * 30))}.",
               f"CLÁUSULA TERCEIRA — O aluguel mensal é de {money_words_pt(v)}, a ser pago até o dia {rng.randint(1, 10)} de cada mês, reajustado anualmente pelo {pick(rng, ['IGP-M', 'IPCA', 'INPC'])}.",
               pick(rng, [f"CLÁUSULA QUARTA — Como garantia, {g(b, 'o', 'a')} locatári{g(b, 'o', 'a')} entrega caução de {money_pt(v * 3)}, equivalente a três aluguéis.",
                          "CLÁUSULA QUARTA — As despesas de condomínio, água, energia elétrica e IPTU correm por conta do locatário.",
                          "CLÁUSULA QUARTA — É vedada a sublocação, cessão ou empréstimo do imóvel sem consentimento prévio e por escrito."]),
               f"Fica eleito o foro da comarca {de(c)}/{c[1]} para dirimir quaisquer dúvidas oriundas deste contrato.",
               f"{c[0]}, {date_pt(d)}."]
    margin = margin_notes(rng, reg, c, d, [a["name"], b["name"]], extra=[f"Testemunha: {reg.name(rng, rng.random() < 0.5)}"])
    return header, margin, "private", clauses


def doc_compra_venda(rng, reg):
    c = pick(rng, CITIES)
    a = person(rng, reg, None, c)
    b = person(rng, reg, None, c)
    d = rand_date(rng, 2015, 2025)
    if rng.random() < 0.5:
        marca, modelo = pick(rng, [("Volkswagen", "Gol 1.0"), ("Fiat", "Uno Mille"), ("Chevrolet", "Onix LT"),
                                    ("Ford", "Ka SE"), ("Toyota", "Corolla XEi"), ("Honda", "Civic EXL"), ("Renault", "Sandero")])
        ano = rng.randint(2005, 2024)
        objeto = (f"o veículo {marca} {modelo}, ano {ano}/{ano + rng.randint(0, 1)}, cor {pick(rng, ['prata', 'branca', 'preta', 'vermelha', 'cinza'])}, "
                  f"placa {placa(rng)}, RENAVAM {rng.randint(10 ** 10, 10 ** 11 - 1)}")
        v = rng.randint(30, 180) * 500
    else:
        objeto = (f"o imóvel situado na {address(rng, c)}, matriculado sob o nº {rng.randint(1000, 199999)} no "
                  f"{pick(rng, ORDINALS[:4])} Cartório de Registro de Imóveis {de(c)}")
        v = rng.randint(80, 900) * 1000
    parcelas = pick(rng, [1, 1, 2, 3, 10, 12])
    pag = ("à vista, nesta data, por transferência bancária, do que dá plena quitação" if parcelas == 1 else
           f"em {parcelas} ({words_pt(parcelas)}) parcelas mensais e iguais, vencendo a primeira em {date_num(add_days(d, 30))}")
    header = "CONTRATO PARTICULAR DE COMPRA E VENDA"
    clauses = [f"VENDEDOR{g(a, '', 'A')}: {qualify(a)}.",
               f"COMPRADOR{g(b, '', 'A')}: {qualify(b)}.",
               f"CLÁUSULA 1ª — {g(a, 'O vendedor', 'A vendedora')} vende {g(b, 'ao comprador', 'à compradora')} {objeto}, livre de ônus, dívidas e gravames.",
               f"CLÁUSULA 2ª — O preço certo e ajustado é de {money_words_pt(v)}, pago {pag}.",
               pick(rng, ["CLÁUSULA 3ª — A posse é transmitida nesta data, respondendo o comprador, a partir de então, por tributos e multas.",
                          "CLÁUSULA 3ª — O presente contrato é celebrado em caráter irrevogável e irretratável, obrigando herdeiros e sucessores."]),
               f"E, por estarem justos e contratados, assinam o presente em duas vias de igual teor. {c[0]}, {date_pt(d)}."]
    margin = margin_notes(rng, reg, c, d, [a["name"], b["name"]], stamp_prob=0.8)
    return header, margin, "private", clauses


SERVICOS = ["manutenção preventiva e corretiva das instalações elétricas e hidráulicas",
            "limpeza e conservação das áreas comuns", "assessoria contábil e fiscal, incluindo a escrituração mensal",
            "desenvolvimento e manutenção de sistema de gestão", "vigilância patrimonial desarmada, 24 horas por dia",
            "transporte de mercadorias entre as unidades da contratante"]


def doc_servicos(rng, reg):
    c = pick(rng, CITIES)
    d = rand_date(rng, 2015, 2025)
    co = company(rng, reg, c)
    rep = person(rng, reg, None, c)
    if rng.random() < 0.5:
        cli = person(rng, reg, None, c)
        contratante = qualify(cli)
        signers = [cli["name"], rep["name"]]
    else:
        cli = company(rng, reg, c)
        contratante = f"{cli['name']}, pessoa jurídica de direito privado, inscrita no CNPJ sob o nº {cli['cnpj']}, com sede na {cli['addr']}"
        signers = [rep["name"]]
    v = rng.randint(8, 300) * 50
    meses = pick(rng, [6, 12, 24])
    header = "CONTRATO DE PRESTAÇÃO DE SERVIÇOS"
    clauses = [f"CONTRATANTE: {contratante}.",
               f"CONTRATADA: {co['name']}, inscrita no CNPJ sob o nº {co['cnpj']}, com sede na {co['addr']}, neste ato representada por {rep['name']}, CPF {rep['cpf']}.",
               f"CLÁUSULA PRIMEIRA — DO OBJETO: prestação de serviços de {pick(rng, SERVICOS)}.",
               f"CLÁUSULA SEGUNDA — DO PREÇO: pelos serviços a contratante pagará mensalmente {money_words_pt(v)}, mediante emissão de nota fiscal.",
               f"CLÁUSULA TERCEIRA — DO PRAZO: {meses} ({words_pt(meses)}) meses a partir de {date_num(d)}, podendo ser rescindido por qualquer das partes com aviso prévio de 30 (trinta) dias.",
               f"Foro: comarca {de(c)}/{c[1]}. {c[0]}, {date_pt(d)}."]
    margin = margin_notes(rng, reg, c, d, signers, stamp_prob=0.5)
    return header, margin, "private", clauses


SECRETARIAS = ["Administração", "Educação", "Saúde", "Obras e Serviços Públicos", "Meio Ambiente", "Fazenda",
               "Assistência Social", "Cultura e Turismo"]
ASSUNTOS = [("Solicitação de documentos", "solicitamos o envio, no prazo de 10 (dez) dias úteis, da documentação complementar referente ao processo administrativo nº {proc}, a fim de dar continuidade à análise do pedido."),
            ("Resposta a requerimento", "em atenção ao requerimento protocolado sob o nº {proc}, informamos que o pedido foi deferido e que a providência solicitada será executada no prazo de 30 (trinta) dias."),
            ("Convocação", "convocamos Vossa Senhoria a comparecer à sede desta Secretaria no dia {data}, às {hora}, para tratar de assunto referente ao processo nº {proc}, munido de documento de identificação."),
            ("Notificação", "notificamos Vossa Senhoria de que o imóvel situado na {end} apresenta irregularidade quanto à limpeza do terreno, devendo ser regularizado no prazo de 15 (quinze) dias, sob pena de multa.")]


def doc_oficio(rng, reg):
    c = pick(rng, CITIES)
    d = rand_date(rng, 2015, 2025)
    sec = pick(rng, SECRETARIAS)
    dest = person(rng, reg, None, c)
    signer = person(rng, reg, None, c)
    num = f"{rng.randint(1, 999):03d}/{d[0]}"
    header = f"PREFEITURA MUNICIPAL {de(c).upper()}\nSecretaria Municipal de {sec}\nOfício nº {num}"
    subj, body = pick(rng, ASSUNTOS)
    proc = f"{rng.randint(1, 99999)}/{d[0]}"
    body = body.format(proc=proc, data=date_num(add_days(d, rng.randint(7, 30))), hora=_hm(rng, 8, 16), end=address(rng, c))
    lines = [f"{c[0]}, {date_pt(d)}.",
             f"A{g(dest, 'o Senhor', ' Senhora')} {dest['name']}",
             dest["addr"],
             f"Assunto: {subj}",
             f"Prezad{g(dest, 'o Senhor', 'a Senhora')},",
             f"Cumprimentando-{g(dest, 'o', 'a')} cordialmente, {body}",
             "Colocamo-nos à disposição para eventuais esclarecimentos.",
             "Atenciosamente,",
             f"{signer['name']}",
             f"{g(signer, 'Secretário', 'Secretária')} Municipal de {sec}"]
    margin = []
    if rng.random() < 0.6:
        margin.append(f"Recebido em {date_num(add_days(d, rng.randint(1, 10)))}. Assinado: {dest['name']}")
    if rng.random() < 0.4:
        margin.append(f"Protocolo nº {proc}")
    if rng.random() < 0.3:
        margin.append(f"Assinado: {signer['name']}")
    rng.shuffle(margin)
    return header, margin, "admin", lines


PEDIDOS = [("a expedição de segunda via do alvará de funcionamento", "o documento original foi extraviado durante a mudança de endereço do estabelecimento"),
           ("a concessão de isenção do IPTU do exercício corrente", "o requerente é aposentado, possui renda inferior a dois salários mínimos e um único imóvel"),
           ("a poda da árvore localizada em frente ao seu imóvel", "os galhos estão encostando na rede elétrica e oferecem risco aos pedestres"),
           ("certidão de tempo de serviço para fins de aposentadoria", "necessita comprovar o período trabalhado junto ao órgão previdenciário"),
           ("o parcelamento de débitos de ISS em atraso", "enfrenta dificuldades financeiras em razão da queda no faturamento"),
           ("a matrícula de seu filho na escola municipal mais próxima de sua residência", "a família mudou-se recentemente para o bairro")]
DESPACHOS = ["Deferido. Encaminhe-se ao setor competente.", "Indeferido por falta de documentação.",
             "Ao Departamento Jurídico para parecer.", "Junte-se ao processo. Aguarde-se.", "Ciente. Arquive-se."]


def doc_requerimento(rng, reg):
    c = pick(rng, CITIES)
    d = rand_date(rng, 2015, 2025)
    p = person(rng, reg, None, c)
    pedido, motivo = pick(rng, PEDIDOS)
    autoridade = pick(rng, [f"Ilustríssimo Senhor Prefeito Municipal {de(c)}", f"Ilmo. Sr. Secretário Municipal de {pick(rng, SECRETARIAS)}",
                            f"Ilmo. Sr. Diretor do Departamento de Recursos Humanos da Prefeitura {de(c)}"])
    header = "REQUERIMENTO"
    lines = [autoridade,
             f"{qualify(p)}, vem, respeitosamente, à presença de Vossa Senhoria requerer {pedido}, pelos motivos a seguir expostos:",
             f"{cap(motivo)}.",
             pick(rng, ["Anexa cópia dos documentos pessoais e comprovante de residência.", "Junta os documentos necessários.", ""]),
             "Nestes termos, pede deferimento.",
             f"{c[0]}, {date_pt(d)}.",
             p["name"]]
    lines = [x for x in lines if x]
    proto = f"Protocolo nº {rng.randint(100, 99999)}/{d[0]} — Recebido em {date_num(d)}"
    margin = [proto] if rng.random() < 0.7 else []
    if rng.random() < 0.5:
        margin.append(f"{pick(rng, DESPACHOS)} Em {date_num(add_days(d, rng.randint(2, 30)))}. Assinado: {reg.name(rng, rng.random() < 0.5)}")
    if rng.random() < 0.3:
        margin.append(f"Assinado: {p['name']}")
    return header, margin, "plain", lines


DOMAIN_KINDS = [doc_nascimento, doc_casamento, doc_obito, doc_negativa, doc_procuracao, doc_locacao,
                doc_compra_venda, doc_servicos, doc_oficio, doc_requerimento]


def domain_page(rng, reg):
    """One scanned page: the clean structured JSON and its noisy OCR, where margin notes and
    stamps land between body lines (and sometimes above the header or below the footer)."""
    while True:
        mark = reg.mark()
        header, margin, foot_kind, lines = pick(rng, DOMAIN_KINDS)(rng, reg)
        # A long document runs over several pages: lay the lines out on pages and keep one.
        limit = rng.randint(800, 1200)
        pages, cur = [], []
        for line in lines:
            if cur and len("\n".join(cur + [line])) > limit:
                pages.append(cur)
                cur = []
            cur.append(line)
        pages.append(cur)
        k = rng.randrange(len(pages))
        lines = pages[k]
        text = "\n".join(lines)
        if 300 <= len(text) <= 1200:
            total = len(pages) + (1 if rng.random() < 0.2 else 0)  # sometimes a signature page follows
            city = next((c for c in CITIES if c[0] in text), CITIES[0])
            foot = footer(rng, reg, foot_kind, city, total, k + 1)
            break
        reg.undo(mark)  # a rejected page frees its people and numbers
    clean = json.dumps({"header": header, "margin": "\n".join(margin), "footer": foot, "text": text},
                       ensure_ascii=False)
    width = rng.randint(45, 95)
    p_hyphen = 0.2 + 0.6 * rng.random()
    body = []
    for line in lines:
        body.extend(wrap_line(rng, line, width, p_hyphen))
    page_top = header.split("\n")
    page_bottom = foot.split("\n")
    for note in margin:
        note_lines = wrap_line(rng, note, rng.randint(30, 60), 0.3)  # margins are narrow
        r = rng.random()
        if r < 0.12:
            page_top = note_lines + page_top
        elif r < 0.22:
            page_bottom = page_bottom + note_lines
        else:
            at = rng.randint(1, max(1, len(body) - 1))
            body[at:at] = note_lines
    strength = min(1.0, 0.05 + rng.random() ** 1.2)
    noisy = Noise(rng, strength, True).apply("\n".join(page_top + body + page_bottom))
    return {"prompt": f"{DOMAIN_INSTRUCTION}\n{noisy}", "completion": clean}


def gen_domain(rows, seed):
    rng = random.Random(seed * 1_000_003 + 3)
    reg = Registry()
    seen = set()
    splits = {}
    n_eval = max(1, rows // 10)
    for name, n in (("train", rows), ("validation", n_eval), ("test", n_eval)):
        out = []
        while len(out) < n:
            row = domain_page(rng, reg)
            if row["completion"] in seen:
                continue
            seen.add(row["completion"])
            out.append(row)
        splits[name] = out
    return splits


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

DEFAULTS = {"general": 3000, "ocr": 2000, "domain": 1500}


def build(kind, rows, seed, out):
    if kind == "general":
        write_jsonl(os.path.join(out, "train.jsonl"), gen_general(rows, seed), ["text"])
        return
    splits = gen_ocr(rows, seed) if kind == "ocr" else gen_domain(rows, seed)
    for name, rs in splits.items():
        write_jsonl(os.path.join(out, f"{name}.jsonl"), rs, ["prompt", "completion"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=["general", "ocr", "domain", "all"])
    ap.add_argument("--rows", type=int, help="train rows (validation/test get rows // 10 each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="output folder (default: datasets/<kind>; with `all`, the parent folder)")
    a = ap.parse_args(argv)
    kinds = ["general", "ocr", "domain"] if a.kind == "all" else [a.kind]
    for k in kinds:
        rows = a.rows or DEFAULTS[k]
        if a.kind == "all":
            out = os.path.join(a.out or HERE, k)
        else:
            out = a.out or os.path.join(HERE, k)
        build(k, rows, a.seed, out)
        print(f"{k}: {rows} train rows -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
