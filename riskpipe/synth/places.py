"""Where the synthetic world's parties live and how its parcels travel: shipper countries and
currencies, person and street names, US cities, universities, company-name parts, phone codes, mail
domains, marketplaces, modes, ports of entry and carriers. Constants only; :mod:`riskpipe.synth.population`
draws the entities from them."""

from __future__ import annotations

import numpy as np

# shipper countries weighted like real US e-commerce origins (China and Hong Kong first)
SHIPPER_COUNTRIES: dict[str, float] = {
    "CN": 0.55,
    "HK": 0.12,
    "KR": 0.035,
    "GB": 0.035,
    "CA": 0.035,
    "MX": 0.04,
    "JP": 0.03,
    "DE": 0.03,
    "VN": 0.025,
    "IN": 0.02,
    "TW": 0.015,
    "FR": 0.015,
    "IT": 0.012,
    "TR": 0.01,
    "NL": 0.008,
    "ES": 0.007,
    "TH": 0.007,
    "CH": 0.004,
    "CO": 0.004,
}
COUNTRIES = list(SHIPPER_COUNTRIES) + ["US", "SG", "MY"]
LOCAL_CURRENCY = {
    "CN": "CNY",
    "HK": "HKD",
    "GB": "GBP",
    "DE": "EUR",
    "FR": "EUR",
    "IT": "EUR",
    "NL": "EUR",
    "ES": "EUR",
    "MX": "MXN",
    "CA": "CAD",
    "JP": "JPY",
}
CURRENCIES = ["USD", "CNY", "HKD", "EUR", "GBP", "MXN", "CAD", "JPY"]
#: units of currency per USD (approximate; ingest converts with its own replaceable table)
PER_USD = np.array([1.0, 7.2, 7.8, 0.92, 0.79, 17.5, 1.36, 150.0])

FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Carlos Maria Jose Ana Luis Sofia Wei Li Ming Hui Jun Mei Raj Priya Amit "
    "Anjali Kevin Karen Brian Nancy Jason Lisa Daniel Betty Matthew Sandra Anthony Ashley Mark Emily Tyler "
    "Hannah Juan Rosa Minh Lan Ahmed Fatima Omar Aisha Ivan Olga Kofi Ama Hiro Yuki"
).split()
LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Chen Wang Zhang Liu Patel Shah Kim Park "
    "Tran Khan Ali Cohen Murphy Cruz Reyes Morales Ortiz"
).split()
STREETS = (
    "Maple Oak Pine Cedar Elm Washington Lake Hill Park Main Sunset Highland Willow Meadow Church "
    "Spring Ridge Forest River Jefferson Lincoln Franklin Madison Jackson Adams Cherry Walnut Chestnut "
    "Lakeview Valley Mill Center Union Broad Market Grove Hickory Birch Dogwood Magnolia Orchard "
    "Prospect Summit Bay Harbor Laurel Aspen Sycamore Poplar Spruce Heritage Liberty Victory"
).split()
SUFFIX_SHORT = ["St", "Ave", "Rd", "Blvd", "Dr", "Ln", "Ct", "Way", "Pl"]
SUFFIX_LONG = ["Street", "Avenue", "Road", "Boulevard", "Drive", "Lane", "Court", "Way", "Place"]
CITIES = [  # city, state, 3-digit ZIP prefix
    ("New York", "NY", "100"),
    ("Brooklyn", "NY", "112"),
    ("Queens", "NY", "113"),
    ("Los Angeles", "CA", "900"),
    ("San Diego", "CA", "921"),
    ("San Jose", "CA", "951"),
    ("San Francisco", "CA", "941"),
    ("Chicago", "IL", "606"),
    ("Houston", "TX", "770"),
    ("Dallas", "TX", "752"),
    ("San Antonio", "TX", "782"),
    ("El Paso", "TX", "799"),
    ("Austin", "TX", "787"),
    ("Phoenix", "AZ", "850"),
    ("Tucson", "AZ", "857"),
    ("Philadelphia", "PA", "191"),
    ("Pittsburgh", "PA", "152"),
    ("Jacksonville", "FL", "322"),
    ("Miami", "FL", "331"),
    ("Orlando", "FL", "328"),
    ("Columbus", "OH", "432"),
    ("Cleveland", "OH", "441"),
    ("Indianapolis", "IN", "462"),
    ("Seattle", "WA", "981"),
    ("Denver", "CO", "802"),
    ("Boston", "MA", "021"),
    ("Cambridge", "MA", "021"),
    ("Nashville", "TN", "372"),
    ("Detroit", "MI", "482"),
    ("Portland", "OR", "972"),
    ("Las Vegas", "NV", "891"),
    ("Louisville", "KY", "402"),
    ("Baltimore", "MD", "212"),
    ("Milwaukee", "WI", "532"),
    ("Albuquerque", "NM", "871"),
    ("Atlanta", "GA", "303"),
    ("Newark", "NJ", "071"),
    ("Jersey City", "NJ", "073"),
    ("Charlotte", "NC", "282"),
    ("Minneapolis", "MN", "554"),
    ("Salt Lake City", "UT", "841"),
    ("Kansas City", "MO", "641"),
    ("Omaha", "NE", "681"),
    ("Providence", "RI", "029"),
    ("Hartford", "CT", "061"),
    ("Burlington", "VT", "054"),
    ("Portland", "ME", "041"),
    ("Wilmington", "DE", "198"),
]
UNIVERSITIES = (
    "State University",
    "Institute of Technology",
    "University Medical Center",
    "College of Sciences",
    "Polytechnic University",
    "Research University",
)
DEPTS = ("Dept of Chemistry", "Chemistry Dept", "Dept of Pharmacology", "Biochemistry Lab", "Materials Science Lab")
CN_CITIES = (
    "Shenzhen Guangzhou Yiwu Dongguan Hangzhou Ningbo Xiamen Shanghai Wuhan Shijiazhuang Jinan "
    "Zhengzhou Tianjin Suzhou Foshan"
).split()
WORDS = (
    "Huaxin Xinyuan Jiale Hongda Mingtai Ruifeng Tianyi Jinsheng Weiye Kangda Baili Haoyun Longxiang "
    "Shengda Yongan Fuda Hengtai Xinda Jiaxin Zhongke Bright Global Sunrise Golden Star Ocean Pacific "
    "Union Prime Nova Apex Vista Delta Orion"
).split()
TRADES = (
    "Trading E-commerce Technology Import&Export Industrial Biotech Chemical Electronics Garment "
    "Household Crafts Supply Logistics Pharmaceutical Materials"
).split()
CO_SUFFIX = {
    "CN": "Co., Ltd",
    "HK": "Limited",
    "GB": "Ltd",
    "DE": "GmbH",
    "FR": "SARL",
    "IT": "S.r.l.",
    "NL": "B.V.",
    "ES": "S.L.",
    "MX": "S.A. de C.V.",
    "CA": "Inc.",
    "JP": "K.K.",
    "KR": "Co., Ltd",
    "IN": "Pvt Ltd",
    "VN": "Co., Ltd",
    "TW": "Co., Ltd",
    "TR": "Ltd. Sti.",
    "TH": "Co., Ltd",
    "CH": "AG",
    "CO": "S.A.S.",
    "SG": "Pte Ltd",
    "MY": "Sdn Bhd",
    "US": "LLC",
}
PHONE_CC = {
    "CN": "86",
    "HK": "852",
    "GB": "44",
    "DE": "49",
    "FR": "33",
    "IT": "39",
    "NL": "31",
    "ES": "34",
    "MX": "52",
    "CA": "1",
    "JP": "81",
    "KR": "82",
    "IN": "91",
    "VN": "84",
    "TW": "886",
    "TR": "90",
    "TH": "66",
    "CH": "41",
    "CO": "57",
    "SG": "65",
    "MY": "60",
    "US": "1",
}
MAIL_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "aol.com"]
SHIPPER_MAIL = ["163.com", "qq.com", "126.com", "gmail.com", "outlook.com", "foxmail.com", "yahoo.com"]
MARKETPLACES = ["amazon", "temu", "shein", "aliexpress", "ebay", "etsy", "walmart", "tiktok_shop"]

# address kinds
HOUSE, APARTMENT, COMMERCIAL, FORWARDER, UNIVERSITY = 0, 1, 2, 3, 4

# ports and carriers ------------------------------------------------------------------------
MODES = ["express", "postal", "air_cargo", "truck"]
PORTS: dict[str, list[tuple[str, float]]] = {  # mode -> (Schedule D code, weight)
    "express": [
        ("4701", 0.2),
        ("4196", 0.22),
        ("2095", 0.2),
        ("1704", 0.08),
        ("3901", 0.1),
        ("2720", 0.1),
        ("5206", 0.05),
        ("5501", 0.05),
    ],
    "postal": [("4771", 0.45), ("2704", 0.3), ("5206", 0.1), ("2809", 0.15)],
    "air_cargo": [("2720", 0.3), ("4701", 0.25), ("3901", 0.15), ("1704", 0.1), ("3029", 0.1), ("5501", 0.1)],
    "truck": [("2304", 0.4), ("2506", 0.25), ("2604", 0.2), ("2402", 0.15)],  # Mexican border
}
CANADA_TRUCK_PORTS = [("3801", 0.4), ("0901", 0.35), ("3004", 0.25)]  # Detroit, Buffalo, Blaine
CARRIERS: dict[str, list[tuple[str, float]]] = {
    "express": [("DHL", 0.3), ("FDX", 0.3), ("UPS", 0.3), ("SFX", 0.05), ("YUN", 0.05)],
    "postal": [("USPS", 1.0)],  # replaced by the origin's postal operator below
    "air_cargo": [("CK", 0.25), ("CX", 0.2), ("5Y", 0.15), ("CA", 0.15), ("K4", 0.15), ("PO", 0.1)],
    "truck": [("MXTR", 0.3), ("TFMX", 0.25), ("ESTR", 0.2), ("CASTR", 0.15), ("FRTX", 0.1)],
}
POSTAL_OPERATOR = {
    "CN": "CNPOST",
    "HK": "HKPOST",
    "GB": "ROYALMAIL",
    "DE": "DPAG",
    "CA": "CANPOST",
    "JP": "JPPOST",
    "KR": "KPOST",
    "MX": "SEPOMEX",
    "FR": "LAPOSTE",
    "IN": "INDIAPOST",
}
CARRIER_CODES = sorted({c for v in CARRIERS.values() for c, _ in v} | set(POSTAL_OPERATOR.values()) | {"UPU"})
PORT_CODES = sorted({p for v in PORTS.values() for p, _ in v} | {p for p, _ in CANADA_TRUCK_PORTS})
