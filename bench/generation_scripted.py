"""Benchmark: a scripted self-instruct run to 52,000 instructions through the real client, with no model delay.

    python bench/generation_scripted.py                      # target 52,000, concurrency 64
    python bench/generation_scripted.py --target 5000        # a quick look

A local OpenAI-compatible ASGI app (served in-process, no socket) answers each request at once with a numbered
list of Japanese tasks (items 4 to 19) made deterministically from the request: its sampling seed, which the
client derives from the request's sample index, and its prompt. The tasks are varied (explanations, lists,
comparisons, writing, rewriting, classification, summaries, translation, arithmetic, extraction, code, advice) and
about a tenth are light edits of a fixed set of "popular" tasks, so that, as with a real model, more and more
candidates repeat something already in the pool and the ROUGE-L filter rejects them. Some replies come with chatter
before the list, full-width numbering, missing numbers, or cut off at max_tokens (finish_reason "length").

Everything else is the real pipeline: `jinstruct.llm.LLMClient` (cache in a temporary folder, concurrency, ledger),
`jinstruct.generate.self_instruct.generate_self_instruct` (parsing, in-order processing, incremental exact ROUGE-L dedup,
append-only output with checkpoints). The script prints the wall time, requests per second, and the share of the
time spent in dedup; with `--resume` it also writes a second output from the same cache (every answer cached) and
restarts that finished output (the pool rebuilt from the file, nothing to send).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jinstruct.generate.self_instruct import (
    SelfInstructRecipe,
    generate_self_instruct,
    request_series,
)
from jinstruct.llm import EndpointSettings, LLMClient
from jinstruct.formats.seed_task import Instance, SeedTask

TOPICS = """梅雨 桜前線 紅葉 雪国の暮らし 花火大会 盆踊り 七夕 節分 お花見 初詣 お中元 年越しそば 鏡開き 土用の丑の日
味噌づくり 発酵食品 出汁の取り方 おにぎり 肉じゃが 焼き魚 漬物 和菓子 抹茶 日本茶の淹れ方 駅弁 立ち食いそば 回転寿司
銭湯 旅館 商店街 コンビニ 自動販売機 満員電車 在来線 夜行バス 通勤ラッシュ 宅配便 ふるさと納税 町内会 回覧板 ゴミの分別
落語 狂言 浮世絵 和紙 陶芸 盆栽 生け花 折り紙 けん玉 百人一首 かるた 将棋 囲碁 剣道 弓道 相撲 駅伝 甲子園
太陽光発電 風力発電 電気自動車 蓄電池 水素エネルギー 省エネ家電 スマート家電 半導体 生成AI 音声認識 機械翻訳 検索エンジン
データベース 表計算ソフト プログラミング教育 暗号資産 キャッシュレス決済 ネット通販 動画配信 ポッドキャスト オンライン会議
睡眠不足 花粉症 熱中症 歯の健康 姿勢の改善 ストレッチ 筋力トレーニング ウォーキング 食物繊維 減塩 水分補給 献血 健康診断
地震の備え 台風の進路 火山 津波 気候変動 海面上昇 外来種 里山 干潟 サンゴ礁 渡り鳥 ミツバチ 森林保全 リサイクル
江戸の町 戦国武将 鎖国 明治の近代化 大正ロマン 高度経済成長 バブル経済 平成の出来事 古墳 遣唐使 源氏物語 枕草子 奥の細道
少子化 高齢化 地方移住 空き家 働き方改革 副業 育児休業 介護 年金 消費税 物価上昇 円相場 最低賃金 投資信託 家計簿
方言 敬語 擬音語 四字熟語 ことわざ 漢字の部首 送り仮名 外来語 若者言葉 手紙の書き方 メールの件名 履歴書 面接
宇宙ステーション 月面探査 ブラックホール 流れ星 オーロラ 潮の満ち引き 虹 雷 雲の種類 天気図 化石 恐竜 遺伝子 免疫
猫の習性 犬の散歩 金魚 メダカ 観葉植物 家庭菜園 ベランダ菜園 キャンプ 登山 釣り 写真 読書会 図書館 美術館 博物館
鉄道模型 郵便制度 選挙 裁判員制度 国会 地方自治 国際交流 難民問題 食料自給率 漁業 林業 酪農 米づくり 棚田 果樹園 養蜂
温泉地 城下町 宿場町 灯台 ダム 橋の構造 トンネル工事 高速道路 空港 港湾 物流倉庫 自動運転 ドローン配送 ロボット掃除機
電子書籍 紙の辞書 万年筆 書道 水彩画 油絵 版画 合唱 吹奏楽 三味線 尺八 和太鼓 能 歌舞伎 文楽 漫才 コント 紙芝居
映画館 演劇 ミュージカル アニメ制作 漫画雑誌 ゲーム実況 プロ野球 サッカー観戦 ラグビー 卓球 バドミントン 水泳教室 スキー
マラソン大会 運動会 文化祭 修学旅行 部活動 塾 受験勉強 奨学金 留学 ボランティア 防災訓練 避難所 応急手当 救急車 薬局
保育園 児童館 公民館 老人ホーム 在宅勤務 フレックス制度 転職 起業 確定申告 住宅ローン 賃貸契約 引っ越し 断捨離 収納術
洗濯 アイロンがけ 靴磨き 裁縫 編み物 日曜大工 自転車の整備 洗車 車検 燃費 公共交通 シェアサイクル カーシェア 相乗り""".split()

ASPECTS = """歴史 仕組み 魅力 問題点 始め方 注意点 メリット デメリット 種類 選び方 コツ 将来性 起源 地域差 よくある誤解
楽しみ方 必要な道具 費用 効果 向いている人 最近の変化 社会への影響 身近な例 基本用語 失敗しやすい点""".split()

AUDIENCES = """小学生 中学生 高校生 大学生 新社会人 高齢者 外国人旅行者 初心者 子育て中の親 留学生 経営者 エンジニア
先生 料理好きの人 運動が苦手な人""".split()

GENRES = """俳句 短歌 川柳 短い物語 詩 エッセイ キャッチコピー スピーチ 日記 手紙 ニュース記事の見出し 広告文 なぞなぞ クイズ 歌詞""".split()

PEOPLE = """旅行ガイド 料理研究家 歴史の先生 気象予報士 司書 医師 弁護士 編集者 カウンセラー 探偵 宇宙飛行士 農家 駅員 学芸員""".split()

FORMATS = """箇条書きで 三行で 百字以内で 表の形で 一文で 会話の形で 丁寧な言葉で 例を交えて 結論から先に 段落を二つに分けて""".split()

TAILS = """理由も添えてください。 具体例を一つ入れてください。 専門用語は避けてください。 最後に一言でまとめてください。
根拠も示してください。 数字を使ってください。 比喩を一つ使ってください。 注意点も書いてください。""".split()

STYLES = """丁寧語 くだけた話し言葉 子ども向けの言葉 ビジネスメールの文体 新聞記事の文体 関西弁 古風な言い回し 箇条書き""".split()

ENTITIES = """人名 地名 日付 金額 数字 会社名 駅名 料理名""".split()

LANGUAGES = """Python JavaScript SQL Ruby Go""".split()

ALGORITHMS = """リストの重複を取り除く 文字列を逆順にする 最大公約数を求める 素数かどうか判定する 単語の出現回数を数える
二つの日付の差を日数で求める 偶数だけを取り出す 平均値と中央値を求める 回文かどうか調べる 税込み価格を計算する""".split()

ITEMS = """りんご みかん 鉛筆 ノート 飴 クッキー 折り紙 シール おにぎり 風船""".split()

SENTIMENT = ["肯定", "否定", "中立"]

OPINIONS = [("このカフェのコーヒーは香りが豊かで、また来たいと思いました。", "肯定"),
            ("注文した本が三日も遅れて届き、箱も潰れていました。", "否定"),
            ("明日の会議は午後二時から第二会議室で行われます。", "中立"),
            ("新しいスマートフォンは電池の持ちが良く、とても気に入っています。", "肯定"),
            ("駅前の工事がいつまでも終わらず、毎朝遠回りをしています。", "否定"),
            ("この町の図書館は月曜日が休館日です。", "中立")]

ENGLISH = [("The library opens at nine in the morning.", "図書館は朝九時に開きます。"),
           ("Please turn off your phone during the movie.", "映画の間は携帯電話の電源をお切りください。"),
           ("It has been raining since last night.", "昨夜から雨が降り続いています。"),
           ("My brother is learning to play the guitar.", "兄はギターを習っています。"),
           ("Could you tell me the way to the station?", "駅への行き方を教えていただけますか。")]

CHATTER = ["はい、以下に続きのタスクを書きます。\n\n", "承知しました。4番から19番までです。\n", "続きです。\n\n"]
CLOSING = ["\n###\n以上です。", "\n###\nほかにも必要でしたらお知らせください。"]


def _pick(rng: random.Random, seq: list[str], k: int = 1) -> Any:
    return rng.choice(seq) if k == 1 else rng.sample(seq, k)


def _sentences(rng: random.Random, topic: str, n: int) -> str:
    parts = []
    for _ in range(n):
        t2, a = _pick(rng, TOPICS), _pick(rng, ASPECTS)
        parts.append(rng.choice([
            f"{topic}の{a}は、{t2}と比べると身近で分かりやすいものです。",
            f"{topic}について考えるときは、まず{a}を押さえるとよいでしょう。",
            f"多くの人が{topic}の{a}に関心を持っています。",
            f"{topic}は{_pick(rng, AUDIENCES)}にとっても役に立つ話題です。",
            f"{topic}の{a}は地域や時代によって少しずつ違います。",
            f"一方で、{t2}との関係を指摘する声もあります。",
        ]))
    return "".join(parts)


TEXTS = """文章 ニュース記事 メール 商品レビュー 会話 日記 取扱説明書 議事録 ブログ記事 広告文 手紙 求人票 レシピ 旅行記
論文の要旨 小説の一節 SNSの投稿 口コミ 報告書 スピーチ原稿 お知らせ 案内状 インタビュー記事 歌の歌詞 作文""".split()

# Tasks on a given text: (what to do, in te-form without the final て/で, and whether the verb ends in で).
TEXT_OPS = ["{n}文で要約し", "{style}に書き換え", "誤字や脱字を直し", "主題を一言で答え", "見出しを{n}案考え",
            "内容について質問を{n}つ作っ", "重要な言葉を{n}つ抜き出し", "続きを{n}文書い", "問題点を指摘し", "敬語に直し",
            "箇条書きに整理し", "反対の立場から反論を書い", "表の形にまとめ", "{audience}向けに言い換え", "要点を{n}つに絞っ",
            "書き手の気持ちを推測し", "事実と意見に分け", "読みやすく段落を分け", "タイトルを付け", "英語に訳し"]

TOPIC_OPS = ["{t}の{a}を{aud}にも分かるように説明し", "{t}の{a}を{n}つ挙げ", "{t}と{t2}の違いを{fmt}まとめ",
             "{t}をテーマに{g}を作っ", "{p}の立場から{t}の{a}を語っ", "{t}の{a}について{aud}に助言し",
             "{t}が{t2}に与える影響を考察し", "{aud}が{t}を始めるための計画を立て", "{t}の{a}に関するクイズを{n}問作っ",
             "{t}について賛成と反対の意見を{n}つずつ挙げ", "{t}の{a}を{t2}にたとえて説明し", "{t}についての誤解を{n}つ正し",
             "{t}の{a}を時代順に整理し", "{t}を知らない{aud}に{fmt}紹介し", "{t}に関する{g}の書き出しを考え",
             "{t}と{t2}を組み合わせた新しい企画を提案し", "{t}の{a}を調べるための質問リストを作っ",
             "{aud}向けに{t}の{a}を伝えるポスターの文言を考え", "{t}の{a}を一言で表すキャッチコピーを{n}案出し"]

QUESTIONS = ["{t}の{a}は何ですか？", "なぜ{t}は{aud}に人気があるのでしょうか。", "{t}と{t2}はどちらが{aud}に向いていますか？",
             "{t}の{a}について、{p}ならどう答えますか。", "{t}を続けるこつは何でしょう？", "{t}が生まれた背景を知っていますか？",
             "{aud}にとって{t}の{a}はどれくらい大切ですか。", "もし{t}がなくなったら、暮らしはどう変わると思いますか。"]

ENDINGS = ["てください。", "て。", "てもらえますか。", "てくれませんか。", "てほしいです。", "てみてください。", "ていただけますか。",
           "てください。", "てください。"]

CONTEXTS = ["あなたは{p}です。", "{aud}に話す場面を想定してください。", "来週、{aud}の前で発表します。", "授業の教材に使います。",
            "{p}として答えてください。", "友人から相談されました。", "社内報に載せる予定です。", "子どもに聞かれて困っています。"]


def _te(stem: str, ending: str) -> str:
    """stem + te-form ending; stems ending in ん/い take で after 読ん/泳い-type verbs (here only 読ん, 選ん)."""
    return stem + ending


PLACES = """北海道 東北 関東 北陸 東海 関西 四国 九州 沖縄 京都 大阪 奈良 鎌倉 金沢 長崎 函館 仙台 名古屋 広島 福岡
江戸時代 明治時代 昭和 令和 戦後 古代 海外 都会 田舎 離島 山村 港町 学校 職場 家庭 病院 商店街 大学 図書館 公園""".split()


SURNAMES = """佐藤 鈴木 高橋 田中 伊藤 渡辺 山本 中村 小林 加藤 吉田 山田 佐々木 山口 松本 井上 木村 林 斎藤 清水
山崎 森 池田 橋本 阿部 石川 山下 中島 石井 小川 前田 岡田 長谷川 藤田 後藤 近藤 村上 遠藤 青木 坂本""".split()

GIVEN = """翔太 陽菜 大輝 美咲 蓮 結衣 悠真 さくら 湊 葵 健太 真央 拓海 七海 颯 彩花 樹 楓 隼人 凛 誠 花子 太郎 由美
直樹 恵 浩二 明美 修 千尋""".split()

DETAILS = ["{t2}の話も少し入れてください。", "{name}さんの意見も想定してください。", "{num}字程度でお願いします。",
           "{t2}と関連づけてください。", "{p}の目線も加えて。", "{aud}が読むことを忘れずに。", "{t2}の例を一つ添えて。",
           "{num}年前との違いにも触れて。"]

SITUATIONS = ["{name}さんから次のような相談を受けました。", "{name}さんは{t2}が好きです。", "{name}さんは来月{t2}の発表をします。",
              "{num}人のクラスで{t2}について話し合います。", "予算は{num}千円です。", "{name}さんのために、",
              "{t2}に詳しい{name}さんに聞くつもりで、", "締め切りは{num}日後です。"]


# Ways of saying the same thing: each group's words replace one another at random, as a model varies its wording.
VARIANTS = [("説明し", "解説し", "紹介し", "述べ"), ("挙げ", "書き出し", "列挙し", "示し"), ("まとめ", "整理し", "要約し"),
            ("作っ", "作成し", "考え"), ("分かるように", "伝わるように", "理解できるように", "納得できるように"),
            ("について", "に関して", "をめぐって"), ("次の", "以下の", "下の", "この"), ("答え", "回答し", "返答し"),
            ("教え", "伝え", "知らせ"), ("提案し", "考案し", "企画し"), ("注意点", "気をつけること", "落とし穴"),
            ("理由", "根拠", "わけ"), ("書い", "記し", "綴っ"), ("向けに", "のために", "を対象に"),
            ("何ですか", "何でしょうか", "どういうものですか"), ("大切", "重要", "大事")]


def _vary(rng: random.Random, text: str) -> str:
    for group in VARIANTS:
        for word in group:
            if word in text and rng.random() < 0.7:
                text = text.replace(word, rng.choice(group))
                break
    return text


def _topic(rng: random.Random) -> str:
    return (_pick(rng, PLACES) + "の" if rng.random() < 0.8 else "") + _pick(rng, TOPICS)


def fresh_task(rng: random.Random) -> tuple[str, str, str]:
    """(instruction, input, output) of one task, made from `rng`."""
    t, t2 = _topic(rng), _topic(rng)
    slots = {"t": t, "t2": t2, "a": _pick(rng, ASPECTS), "aud": _pick(rng, AUDIENCES), "fmt": _pick(rng, FORMATS),
             "g": _pick(rng, GENRES), "p": _pick(rng, PEOPLE), "n": rng.choice("二三四五"), "style": _pick(rng, STYLES),
             "audience": _pick(rng, AUDIENCES)}
    slots["name"] = _pick(rng, SURNAMES) + (_pick(rng, GIVEN) if rng.random() < 0.5 else "")
    slots["num"] = str(rng.randint(2, 99))
    kind = rng.random()
    inp = ""
    if kind < 0.3:
        obj = _pick(rng, TEXTS)
        lead = rng.choice(["次の{o}を", "以下の{o}を読んで、", "この{o}を", "与えられた{o}を", "下に示す{o}を"]).format(o=obj)
        ins = lead + rng.choice(TEXT_OPS).format(**slots) + rng.choice(ENDINGS)
        inp = _sentences(rng, t, rng.randint(1, 4))
        out = _sentences(rng, t, rng.randint(1, 2))
    elif kind < 0.4:
        ins = rng.choice(["次の文の感情を「肯定」「否定」「中立」のどれかで答えてください。", "以下のレビューは好意的ですか、否定的ですか。",
                          "この{o}が表す気持ちを分類して。", "次の{o}の書き手は満足していますか。"]).format(o=_pick(rng, TEXTS))
        inp, out = rng.choice(OPINIONS)
    elif kind < 0.48:
        x, y, item = rng.randint(6, 96), rng.randint(2, 8), _pick(rng, ITEMS)
        ins = rng.choice([f"{item}が{x}個あります。{y}人で同じ数ずつ分けると、一人何個で、何個余りますか。",
                          f"{_pick(rng, PEOPLE)}が{item}を{x}個仕入れ、{y}個ずつ袋に詰めます。袋はいくつできますか。",
                          f"{x}を{y}で割った商と余りを求め、計算の手順も示して。"])
        out = f"{x}÷{y}={x // y}余り{x % y}です。"
    elif kind < 0.55:
        lang, algo = _pick(rng, LANGUAGES), _pick(rng, ALGORITHMS)
        ins = rng.choice([f"{lang}で{algo}関数を書き、使い方も示してください。", f"{algo}処理を{lang}で実装して。",
                          f"{lang}初心者向けに、{algo}方法を説明してください。"])
        out = f"def solve(data):\n    # {algo}\n    return data\n\nprint(solve([1, 2, 3]))"
    elif kind < 0.7:
        ins = rng.choice(QUESTIONS).format(**slots)
        out = _sentences(rng, t, 2)
    else:
        ins = rng.choice(TOPIC_OPS).format(**slots) + rng.choice(ENDINGS)
        out = _sentences(rng, t, rng.randint(1, 3))
    if rng.random() < 0.6:
        ins = rng.choice(SITUATIONS).format(**slots) + ins
    elif rng.random() < 0.5:
        ins = rng.choice(CONTEXTS).format(**slots) + ins
    if rng.random() < 0.4:
        ins += _pick(rng, TAILS)
    for detail in rng.sample(DETAILS, rng.choice((0, 1, 1, 2))):
        ins += detail.format(**slots)
    return _vary(rng, ins), inp, out


POPULAR = [fresh_task(random.Random(f"popular:{i}")) for i in range(3000)]


def task_for(rng: random.Random) -> tuple[str, str, str]:
    """A fresh task, or (a tenth of the time) a popular one with a small edit."""
    if rng.random() < 0.1:
        ins, inp, out = rng.choice(POPULAR)
        if rng.random() < 0.5:
            ins = ins.replace("ください", rng.choice(["下さい", "くれますか", "くださいね"]), 1)
        return ins, inp, out
    return fresh_task(rng)


def scripted_reply(body: dict[str, Any]) -> tuple[str, str]:
    """(text, finish_reason) for a chat completion body: the continuation of the numbered list, items 4-19."""
    prompt = body["messages"][-1]["content"]
    salt = hashlib.sha256(json.dumps([body.get("seed"), prompt], ensure_ascii=False).encode()).hexdigest()
    rng = random.Random(salt)
    style = rng.random()
    blocks = []
    for i in range(4, 20):
        ins, inp, out = task_for(rng)
        num = str(i)
        if style < 0.1:
            num = num.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
            blocks.append(f"{num}．指示：{ins}\n{num}．入力：\n{inp or '<入力なし>'}\n{num}．出力：\n{out}")
        elif style < 0.13:
            blocks.append(f"指示: {ins}\n入力:\n{inp or '<noinput>'}\n出力:\n{out}")
        else:
            blocks.append(f"{num}. 指示: {ins}\n{num}. 入力:\n{inp or '<入力なし>'}\n{num}. 出力:\n{out}")
    text = "###\n" + "\n###\n".join(blocks)
    if rng.random() < 0.15:
        text = rng.choice(CHATTER) + text
    if rng.random() < 0.05:
        return text[: rng.randrange(len(text) // 2, len(text))], "length"
    if rng.random() < 0.1:
        text += rng.choice(CLOSING)
    return text + "\n###\n", "stop"


def create_app() -> FastAPI:
    """The scripted endpoint: /v1/chat/completions answering `scripted_reply`, usage counted in characters."""
    app = FastAPI()
    ids = iter(range(1, 1 << 62))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        text, reason = scripted_reply(body)
        prompt_tokens = sum(len(m["content"]) for m in body["messages"])
        return JSONResponse({
            "id": f"chatcmpl-{next(ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text),
                      "total_tokens": prompt_tokens + len(text)},
        })

    return app


def bench_seeds(n: int = 30) -> list[SeedTask]:
    """Japanese seed tasks for the run, made like the replies (the shipped seeds may not exist yet)."""
    out = []
    for i in range(n):
        ins, inp, outp = fresh_task(random.Random(f"seed:{i}"))
        out.append(SeedTask(id=f"seed_task_{i}", name=f"bench_{i}", instruction=ins,
                            instances=[Instance(input=inp, output=outp)], is_classification=False))
    return out


def run(target: int, concurrency: int, workdir: Path, resume: bool, neighbour_floor: float | None) -> list[dict[str, Any]]:
    settings = EndpointSettings(base_url="http://scripted.local/v1", model="scripted-ja", api_key_env=None,
                                concurrency=concurrency)
    recipe = SelfInstructRecipe.from_seeds(bench_seeds(), seed=0)
    runs = [("fresh run", "a")]
    if resume:  # the same cache: a new output answered from the cache alone, then a restart of the finished output
        runs += [("new output, cached", "b"), ("restart, complete", "b")]
    rows = []
    for label, name in runs:
        out_path = workdir / name / "generated.jsonl"
        client = LLMClient(settings, workdir / "cache.sqlite3", stage="02_generation", run_dir=workdir / name,
                           progress=False, asgi_app=create_app())
        try:
            stats = generate_self_instruct(recipe, client, out_path, target, neighbour_floor=neighbour_floor,
                                           progress=False)
        finally:
            client.close()
        rows.append({"run": label, "target": target, "kept": stats.kept, "requests": stats.requests,
                     "sent": stats.sent, "candidates": stats.candidates, "kept_new": stats.new_records,
                     "rejected": stats.rejected_by_kind(), "wall_s": stats.wall_s, "rps": stats.requests_per_s,
                     "dedup_s": stats.dedup_s + stats.replay_s, "dedup_share": stats.dedup_share})
    series = request_series(workdir / "a" / "generated.jsonl")
    rows[0]["keep_rate"] = float(series["keep_rate"].iloc[-1]) if len(series) else 0.0
    if resume:
        same = (workdir / "a" / "generated.jsonl").read_bytes() == (workdir / "b" / "generated.jsonl").read_bytes()
        rows[0]["identical"] = same
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=int, default=52_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--resume", action="store_true", help="also a cached re-run and a restart of the finished output")
    ap.add_argument("--workdir", help="keep the output here (default: a temporary folder)")
    ap.add_argument("--neighbour-floor", type=float, help="ROUGE-L from which neighbours are scored (default: the "
                    "Deduper's, 0.5); 0.7 keeps the decisions and finds only the closest neighbours, faster")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        rows = run(args.target, args.concurrency, workdir, args.resume, args.neighbour_floor)
    load = os.getloadavg()
    floor = "default (0.5)" if args.neighbour_floor is None else args.neighbour_floor
    print(f"scripted self-instruct to {args.target:,} instructions, concurrency {args.concurrency}, neighbour floor {floor}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} (shared machine), python {sys.version.split()[0]}")
    print(f"{'run':<22} {'requests':>8} {'sent':>6} {'candidates':>10} {'new kept':>9} {'wall s':>8} {'req/s':>7} "
          f"{'dedup s':>8} {'dedup share':>11}  rejected")
    for r in rows:
        print(f"{r['run']:<22} {r['requests']:>8,} {r['sent']:>6,} {r['candidates']:>10,} {r['kept_new']:>9,} "
              f"{r['wall_s']:>8.1f} {r['rps']:>7.1f} {r['dedup_s']:>8.1f} {r['dedup_share']:>10.0%}  {r['rejected']}")
    print(f"final: {rows[-1]['kept']:,} records (target {args.target:,}); keep rate over the run "
          f"{rows[0]['keep_rate']:.1%}")
    if "identical" in rows[0]:
        print(f"the output answered from the cache is byte-identical to the fresh run's: {rows[0]['identical']}")


if __name__ == "__main__":
    main()
