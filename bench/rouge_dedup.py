"""Benchmark: exact ROUGE-L dedup of Japanese instructions, ours against the rouge_score reference.

    python bench/rouge_dedup.py                          # N = 2,000, 10,000, 52,000
    python bench/rouge_dedup.py --sizes 2000 --reference-full 500

The instructions are synthetic but shaped like generated Japanese instructions: 20-110 characters (mean 48), task
templates, ~500 topics, audiences, formats, about 800 distinct characters, and 30% of them made as edits of a recent
one (a synonym, a slot, a sentence or a few characters changed); together with template collisions the filter removes
about half of them at 52,000. They are built deterministically from a seed, without the network.

Each measurement runs in a fresh process, so its peak memory (max RSS) is its own:
- ours, batch: `jinstruct.filter.dedup.dedup` (char tokens, and word tokens from fugashi);
- ours, incremental: `Deduper(k=10, floor=0.5).add` once per text, as the generation stage calls it, with the
  top-10 neighbours scoring >= 0.5;
- reference: Alpaca's loop (texts pre-tokenized, `rouge_scorer._score_lcs` against every kept text) with the same
  tokens. Run in full up to --reference-full texts; above that its time is the mean time per pair on a sample of
  pairs of the data times the exact number of pairs the greedy loop scores, and labelled "extrapolated".
Kept lists are compared with the reference where it ran in full, and ours (batch, incremental, char) with each other
everywhere. The machine is shared: the load average and each run's CPU time are printed with the wall times.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import time

TOPICS = """日本の四季 江戸時代の文化 光合成 地球温暖化 人工知能 機械学習 量子コンピュータ 再生可能エネルギー 少子高齢化
東京の観光地 京都の寺院 北海道の自然 沖縄の伝統料理 和食の特徴 茶道 書道 俳句 短歌 歌舞伎 能楽 落語 相撲 柔道 剣道
日本の祭り お正月の過ごし方 花見 紅葉狩り 温泉 新幹線 富士山 明治維新 戦国時代 平安時代の文学 源氏物語 枕草子 奈良の大仏
プログラミング Python 関数型プログラミング データベース クラウドコンピューティング サイバーセキュリティ 暗号技術 ブロックチェーン
スマートフォン インターネットの歴史 SNSの影響 オンライン学習 リモートワーク 副業 転職活動 面接の準備 履歴書の書き方 時間管理
睡眠の質 健康的な食事 運動習慣 ストレス解消法 瞑想 ヨガ マラソン 水泳 登山 キャンプ 自転車通勤 家庭菜園 観葉植物 猫の飼い方
犬のしつけ 金魚の世話 子育て 読書の習慣 英語学習 中国語の発音 敬語の使い方 漢字の成り立ち ひらがなの歴史 方言 外来語
確定申告 投資信託 株式投資 住宅ローン 年金制度 消費税 インフレーション 円安 国際貿易 サプライチェーン 起業 マーケティング
ブランド戦略 顧客満足度 チームワーク リーダーシップ 会議の進め方 プレゼンテーション 議事録 メールの書き方 電話応対 名刺交換
ボランティア活動 地域社会 防災 地震への備え 台風 熱中症対策 感染症予防 ワクチン 献血 医療制度 介護 バリアフリー 多様性
男女平等 環境保護 海洋プラスチック 森林伐採 生物多様性 絶滅危惧種 宇宙探査 火星移住 ブラックホール 月の満ち欠け 天気予報
虹のしくみ 雷の発生 火山の噴火 化石燃料 電気自動車 自動運転 ドローン ロボット工学 ゲノム編集 再生医療 脳科学 心理学 哲学
倫理学 民主主義 選挙制度 憲法 裁判員制度 国際連合 オリンピック ワールドカップ 野球 サッカー テニス 将棋 囲碁 チェス
クラシック音楽 ジャズ ロック 演歌 アニメ 漫画 映画の歴史 写真撮影の基本 絵画の鑑賞 美術館 博物館 図書館 動物園 水族館
料理のレシピ パンの焼き方 カレーライス ラーメン 寿司 天ぷら 味噌汁 お弁当 コーヒー 紅茶 日本酒 ワイン チョコレート 果物
野菜の保存方法 食品ロス 節約術 家計簿 掃除のコツ 整理整頓 引っ越し 一人暮らし 結婚式 葬儀のマナー 贈り物 年賀状 手紙
友情 恋愛 家族の絆 幸福 努力 失敗から学ぶこと 夢 目標設定 習慣化 創造性 好奇心 批判的思考 問題解決 意思決定 交渉術""".split()

MORE_TOPICS = """自動販売機 郵便制度 鉄道の発達 路面電車 商店街 コンビニエンスストア 百貨店 市場経済 農業の機械化 米作り 漁業 林業
伝統工芸 陶芸 漆器 和紙 着物 浴衣 盆踊り 花火大会 七夕 節分 ひな祭り こどもの日 敬老の日 大晦日 除夜の鐘 初詣 おせち料理
鏡餅 雑煮 すき焼き しゃぶしゃぶ お好み焼き たこ焼き うどん そば 納豆 豆腐 梅干し 漬物 抹茶 和菓子 羊羹 大福 団子
城下町 宿場町 港町 棚田 里山 渓谷 湖 滝 砂漠 熱帯雨林 氷河 珊瑚礁 干潟 湿地 高山植物 渡り鳥 ミツバチ カブトムシ ホタル
恐竜 マンモス 微生物 細胞分裂 遺伝子 免疫 血液型 消化器官 視覚 聴覚 記憶 睡眠 夢占い 色彩心理 音楽療法 アロマテラピー
電卓 そろばん 万年筆 活版印刷 電報 ラジオ テレビ放送 白黒写真 蓄音機 レコード カセットテープ 電子書籍 ポッドキャスト
動画配信 オンラインゲーム 仮想現実 拡張現実 メタバース 三次元プリンター 半導体 太陽電池 風力発電 地熱発電 水素社会 原子力
上下水道 ごみの分別 リサイクル 古着 フリーマーケット シェアリングエコノミー 地産地消 フェアトレード 寄付 クラウドファンディング
奨学金 大学入試 部活動 修学旅行 運動会 文化祭 給食 制服 校則 いじめ問題 不登校 生涯学習 通信教育 資格試験 語学留学
ワーキングホリデー 育児休暇 長時間労働 働き方改革 最低賃金 労働組合 非正規雇用 定年退職 年功序列 成果主義 社内恋愛 飲み会""".split()

MODIFIERS = ["", "", "", "", "日本の", "現代の", "世界の", "身近な", "これからの", "伝統的な", "子ども向けの", "家庭での", "学校での",
             "職場での", "地方の", "都会の", "海外の", "昔の", "初心者向けの", "高齢者にとっての"]

AUDIENCES = """小学生 中学生 高校生 大学生 新入社員 高齢者 外国人観光客 初心者 専門家 保護者 留学生 経営者 エンジニア
教師 医師 子ども 友人 上司 お客様""".split()

FORMATS = """箇条書きで 三行で 百字以内で 二百字程度で 表形式で 丁寧語で 簡潔に 具体的に 分かりやすく 詳しく 一文で
会話形式で 手紙の形で 物語風に ユーモアを交えて 論理的に""".split()

GENRES = """詩 短い物語 エッセイ 俳句 川柳 キャッチコピー スピーチ原稿 ブログ記事 ニュース記事 広告文 日記 歌詞 寸劇の台本
クイズ なぞなぞ 四コマ漫画のあらすじ 紹介文 感想文 説明文""".split()

PEOPLE = """探偵 料理人 宇宙飛行士 歴史学者 小説家 先生 医者 弁護士 旅行ガイド 社長 猫 ロボット 侍 忍者 魔法使い
カウンセラー 記者 科学者 農家 パイロット""".split()

NUMS = "三 五 七 十 二 四".split()

ASPECTS = """歴史 特徴 魅力 問題点 仕組み 将来 基本 メリット 課題 楽しみ方 始め方 注意点 背景 影響 役割 種類 選び方 コツ
効果 リスク 起源 現状 意義 用語 具体例 最新の動向 よくある誤解 成功例 失敗例 地域差""".split()

VERBS = [  # (verb stem for ～てください, polite question form)
    ("説明し", "説明できますか"), ("まとめ", "まとめられますか"), ("教え", "教えてもらえますか"), ("挙げ", "挙げられますか"),
    ("紹介し", "紹介できますか"), ("比較し", "比較できますか"), ("分析し", "分析できますか"), ("要約し", "要約できますか"),
    ("整理し", "整理できますか"), ("考察し", "考察できますか"), ("解説し", "解説できますか"), ("評価し", "評価できますか"),
    ("予想し", "予想できますか"), ("提案し", "提案できますか"), ("論じ", "論じられますか"), ("述べ", "述べられますか"),
    ("図解するつもりで言葉で描写し", "描写できますか"), ("例え話で伝え", "伝えられますか"), ("三つの観点から検討し", "検討できますか"),
    ("一覧にし", "一覧にできますか"),
]

ENDINGS = ["てください。", "て下さい。", "てくれますか？", "てほしいです。", "ていただけますか。", "てもらえますか？", "て。",
           "てみてください。", "てくださいね。", "てくれませんか。"]

QUESTIONS = ["{t}の{x}は何ですか？", "{t}の{x}について知りたいです。", "どうすれば{t}の{x}を理解できますか？",
             "{t}の{x}を{a}にどう伝えればよいでしょうか。", "{t}と{t2}では、{x}にどんな違いがありますか？",
             "{a}にとって{t}の{x}はなぜ大切なのでしょうか。", "{t}の{x}について、{p}ならどう答えますか？"]

WRITES = ["{t}をテーマにした{g}を書い", "{t}についての{g}を作っ", "{p}の視点で{t}の{g}を書い", "{t}と{t2}を題材に{g}を考え",
          "{a}が楽しめる{t}の{g}を作成し", "{t}の{x}を伝える{g}を書い"]

FIXED = ["次の文章を要約してください。", "以下の文を英語に翻訳してください。", "次の英文を自然な日本語に訳してください。",
         "以下の文が肯定的か否定的かを判定してください。", "次の単語を五十音順に並べ替えてください。",
         "次の文章の誤字脱字を直してください。", "与えられた文章の主題を一言で答えてください。",
         "次の数列の規則を見つけて、次の数を答えてください。", "次の計算問題を解き、途中の考え方も示してください。",
         "以下の商品説明から、商品の特徴を抜き出してください。", "次の会話の続きを書いてください。",
         "与えられた二つの文の関係を、含意・矛盾・中立のいずれかで答えてください。"]

PREFIXES = ["", "", "", "", "次の情報をもとに、", "あなたは{p}です。", "{a}向けに、", "{f}", "できれば{f}", "{p}として、",
            "簡単に言うと、", "授業で使うので、", "初めて聞く人のために、"]

TAILS = """理由も添えてください。 具体例を挙げてください。 専門用語はなるべく使わないでください。 箇条書きでお願いします。
最後に一言でまとめてください。 根拠となる事実も示してください。 数字を使って説明してください。 初心者にも分かる言葉でお願いします。
比喩を一つ使ってください。 結論から先に述べてください。 三つの段落に分けてください。 参考になる例え話を入れてください。""".split()

SYNONYMS = [
    ("してください", "して下さい"), ("教えてください", "説明してください"), ("作ってください", "作成してください"),
    ("書いてください", "記述してください"), ("述べてください", "説明してください"), ("挙げてください", "示してください"),
    ("について", "に関して"), ("分かるように", "わかるように"), ("何ですか", "なんですか"), ("考えてください", "提案してください"),
]

EDIT_CHARS = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん日本語文章問題説明"


def synthetic_instructions(n: int, seed: int = 0, near_duplicate_share: float = 0.3) -> list[str]:
    """`n` Japanese instructions of 20-120 characters, `near_duplicate_share` of them edits of a recent one."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        if out and rng.random() < near_duplicate_share:
            text = _near_duplicate(rng, rng.choice(out[-2000:]))
        else:
            text = _fresh(rng)
        if 20 <= len(text) <= 120:
            out.append(text)
    return out


def _fresh(rng: random.Random) -> str:
    t, t2 = (rng.choice(MODIFIERS) + rng.choice(TOPICS if rng.random() < 0.5 else MORE_TOPICS) for _ in range(2))
    slots = {"t": t, "t2": t2, "x": rng.choice(ASPECTS), "a": rng.choice(AUDIENCES), "f": rng.choice(FORMATS),
             "g": rng.choice(GENRES), "p": rng.choice(PEOPLE), "n": rng.choice(NUMS)}
    kind = rng.random()
    if kind < 0.5:
        verb, _ = rng.choice(VERBS)
        obj = rng.choice(["{t}の{x}を", "{t}の{x}について", "{t}と{t2}の{x}を", "{t}における{x}を{n}つ", "{t}の{x}と{t2}の関係を"])
        core = obj + rng.choice(["", "{f}", "{a}にも分かるように", "{a}のために"]) + verb + rng.choice(ENDINGS)
    elif kind < 0.7:
        core = rng.choice(QUESTIONS)
    elif kind < 0.9:
        core = rng.choice(WRITES) + rng.choice(ENDINGS)
    else:
        core = rng.choice(FIXED)
    text = (rng.choice(PREFIXES) + core).format(**slots)
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        text += rng.choice(TAILS)
    return text


def _near_duplicate(rng: random.Random, text: str) -> str:
    kind = rng.random()
    if kind < 0.3:
        pairs = [(a, b) for a, b in SYNONYMS if a in text] + [(b, a) for a, b in SYNONYMS if b in text]
        if pairs:
            a, b = rng.choice(pairs)
            return text.replace(a, b, 1)
    if kind < 0.5:
        present = [w for w in TOPICS + MORE_TOPICS + AUDIENCES + FORMATS + GENRES + ASPECTS if w in text]
        if present:
            word = rng.choice(present)
            pool = next(p for p in (TOPICS, MORE_TOPICS, AUDIENCES, FORMATS, GENRES, ASPECTS) if word in p)
            return text.replace(word, rng.choice(pool), 1)
    if kind < 0.7:
        tails = [s for s in TAILS if s in text]
        return text.replace(rng.choice(tails), "", 1) if tails and rng.random() < 0.5 else text + rng.choice(TAILS)
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.4:
            chars[i] = rng.choice(EDIT_CHARS)
        elif op < 0.7 and len(chars) > 1:
            del chars[i]
        else:
            chars.insert(i, rng.choice(EDIT_CHARS))
    return "".join(chars)


# --- measurements (each in a fresh process) ------------------------------------------------------------------


def _measure(kind: str, n: int, threshold: float) -> dict:
    from jinstruct.filter.dedup import Deduper, dedup

    texts = synthetic_instructions(n)
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "batch-char":
        keep = dedup(texts, threshold=threshold, tokens="char")
    elif kind == "batch-word":
        keep = dedup(texts, threshold=threshold, tokens="word")
    elif kind == "incremental-char":
        deduper = Deduper(threshold=threshold, tokens="char", k=10, floor=0.5)
        keep = [deduper.add(t).kept for t in texts]
    elif kind == "reference-char":
        keep = _reference(texts, threshold)
    else:
        raise ValueError(kind)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "kept": sum(keep), "keep": keep,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _reference(texts: list[str], threshold: float) -> list[bool]:
    """Alpaca's filter with rouge_score: every candidate against every kept text, one pair at a time."""
    from jinstruct.filter.rouge import tokenize
    from rouge_score import rouge_scorer

    pool: list[list[str]] = []
    keep = []
    for text in texts:
        tokens = tokenize(text)
        ok = all(rouge_scorer._score_lcs(tokens, p).fmeasure <= threshold for p in pool)
        keep.append(ok)
        if ok:
            pool.append(tokens)
    return keep


def _reference_pair_seconds(n: int, pairs: int, seed: int = 0) -> float:
    """rouge_score's mean time per pair on `pairs` random pairs of the data."""
    from jinstruct.filter.rouge import tokenize
    from rouge_score import rouge_scorer

    rng = random.Random(seed)
    tokens = [tokenize(t) for t in synthetic_instructions(n)]
    sample = [(rng.choice(tokens), rng.choice(tokens)) for _ in range(pairs)]
    t0 = time.perf_counter()
    for a, b in sample:
        rouge_scorer._score_lcs(a, b)
    return (time.perf_counter() - t0) / pairs


def _in_process(fn, *args):  # type: ignore[no-untyped-def]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _pairs_scored(keep: list[bool]) -> int:
    """How many pairs the greedy loop scores: each candidate against the pool kept before it."""
    total = kept = 0
    for k in keep:
        total += kept
        kept += k
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2000,10000,52000", help="comma-separated N")
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--reference-full", type=int, default=2000, help="run the reference in full up to this N")
    ap.add_argument("--reference-pairs", type=int, default=3000, help="sampled pairs, when no full run to go by")
    ap.add_argument("--no-word", action="store_true", help="skip the word-token runs")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    load_before = os.getloadavg()
    kinds = ["batch-char", "incremental-char"] + ([] if args.no_word else ["batch-word"])
    rows = []
    pair_s: float | None = None  # the reference's seconds per pair, from its largest full run
    for n in sorted(sizes):
        results = {kind: _in_process(_measure, kind, n, args.threshold) for kind in kinds}
        ours = results["batch-char"]
        pairs = _pairs_scored(ours["keep"])
        if n <= args.reference_full:
            ref = _in_process(_measure, "reference-char", n, args.threshold)
            ref_s, pair_s = ref["wall"], ref["wall"] / max(pairs, 1)
            ref_note = "ran in full; " + ("same kept list" if ref["keep"] == ours["keep"] else "KEPT LISTS DIFFER")
        else:
            how = "per-pair time of the full run"
            if pair_s is None:
                pair_s, how = _in_process(_reference_pair_seconds, n, args.reference_pairs), "sampled pairs"
            ref_s = pair_s * pairs
            ref_note = f"extrapolated: {pairs:,} pairs x {pair_s * 1e6:.0f} us ({how})"
        for kind in kinds:
            r = results[kind]
            same = "" if kind == "batch-char" else "same kept list as batch-char" if r["keep"] == ours["keep"] else ""
            rows.append((n, kind, f"{r['wall']:,.1f}", f"{r['cpu']:,.1f}", f"{r['rss_mb']:.0f}", f"{r['kept']:,}",
                         same))
        rows.append((n, "reference-char", f"{ref_s:,.1f}", "", "", "", ref_note))
        rows.append((n, "speed ratio", f"{ref_s / ours['wall']:,.0f}x", "", "", "", "reference / batch-char"))
        print(f"N={n:,} done: kept {ours['kept']:,}; {ref_note}", flush=True)
    print()
    print("| N | method | wall s | CPU s | peak RSS MB | kept | note |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for n, *cells in rows:
        print(f"| {n:,} | " + " | ".join(cells) + " |")
    print()
    print(f"load average (1, 5, 15 min): before {tuple(round(x, 2) for x in load_before)}, after "
          f"{tuple(round(x, 2) for x in os.getloadavg())}; {os.cpu_count()} CPUs, shared with other work")


if __name__ == "__main__":
    main()
