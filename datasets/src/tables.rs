//! Reference tables behind the sample data: Shenzhen's districts, birth-place
//! region codes, names, GB/T 4754 industries, hospitals and ICD-10 chapters.
//!
//! Weights are integers (relative frequencies). They are part of the output
//! format: changing any entry changes every generated file.

/// A Shenzhen district.
pub struct District {
    pub name: &'static str,
    /// Administrative division code used in resident IDs and credit codes.
    pub code: u32,
    /// Resident population, 2020 census, in thousands.
    pub population: u64,
    /// Relative number of registered enterprises.
    pub enterprises: u64,
    /// (year the district was created, code used for IDs issued before). ID
    /// numbers never change, so people born before a district existed carry
    /// the code of the district it was carved from.
    pub predecessor: Option<(i32, u32)>,
}

/// Shenzhen's nine districts and the 大鹏新区 functional area (which uses
/// 龙岗's division code).
pub const DISTRICTS: &[District] = &[
    District {
        name: "福田区",
        code: 440304,
        population: 1553,
        enterprises: 140,
        predecessor: None,
    },
    District {
        name: "罗湖区",
        code: 440303,
        population: 1144,
        enterprises: 80,
        predecessor: None,
    },
    District {
        name: "南山区",
        code: 440305,
        population: 1796,
        enterprises: 150,
        predecessor: None,
    },
    District {
        name: "盐田区",
        code: 440308,
        population: 215,
        enterprises: 15,
        predecessor: None,
    },
    District {
        name: "宝安区",
        code: 440306,
        population: 4477,
        enterprises: 220,
        predecessor: None,
    },
    District {
        name: "龙岗区",
        code: 440307,
        population: 3979,
        enterprises: 180,
        predecessor: None,
    },
    District {
        name: "龙华区",
        code: 440309,
        population: 2529,
        enterprises: 120,
        predecessor: Some((2017, 440306)),
    },
    District {
        name: "坪山区",
        code: 440310,
        population: 551,
        enterprises: 30,
        predecessor: Some((2017, 440307)),
    },
    District {
        name: "光明区",
        code: 440311,
        population: 1095,
        enterprises: 45,
        predecessor: Some((2018, 440306)),
    },
    District {
        name: "大鹏新区",
        code: 440307,
        population: 156,
        enterprises: 10,
        predecessor: None,
    },
];

/// Region code a person born in `year` in district `d` carries in their ID.
pub fn district_id_code(d: &District, birth_year: i32) -> u32 {
    match d.predecessor {
        Some((created, old)) if birth_year < created => old,
        _ => d.code,
    }
}

/// Birth-place province for people insured in Shenzhen but born elsewhere:
/// (province, relative weight, county-level division codes).
pub struct Province {
    pub name: &'static str,
    pub weight: u64,
    pub counties: &'static [u32],
}

/// Weight of Shenzhen-born people, against the provinces below (sum 1000).
pub const LOCAL_BIRTH_WEIGHT: u64 = 120;

/// Origin provinces of Shenzhen's residents (Guangdong outside Shenzhen first).
pub const PROVINCES: &[Province] = &[
    Province {
        name: "广东",
        weight: 280,
        counties: &[
            440103, 440104, 440105, 440106, 440111, 440203, 440204, 440402, 440507, 440511, 440513,
            440514, 440604, 440606, 440703, 440802, 440823, 440882, 440883, 440902, 440981, 440982,
            440983, 441202, 441302, 441322, 441323, 441402, 441403, 441422, 441424, 441426, 441427,
            441481, 441502, 441521, 441523, 441581, 441602, 441621, 441622, 441625, 441702, 441781,
            441802, 441881, 441900, 442000, 445102, 445122, 445202, 445222, 445224, 445281, 445302,
            445381,
        ],
    },
    Province {
        name: "湖南",
        weight: 140,
        counties: &[
            430102, 430104, 430121, 430281, 430321, 430421, 430422, 430424, 430481, 430482, 430521,
            430522, 430523, 430524, 430525, 430581, 430621, 430681, 430721, 430723, 430726, 430902,
            430921, 430922, 430923, 431021, 431022, 431081, 431121, 431122, 431126, 431202, 431281,
            431321, 431381, 431382,
        ],
    },
    Province {
        name: "广西",
        weight: 80,
        counties: &[
            450102, 450122, 450202, 450302, 450321, 450403, 450422, 450481, 450502, 450521, 450702,
            450721, 450722, 450802, 450821, 450881, 450902, 450921, 450922, 450923, 450981, 451002,
            451102, 451202, 451302,
        ],
    },
    Province {
        name: "湖北",
        weight: 80,
        counties: &[
            420102, 420106, 420111, 420202, 420281, 420302, 420321, 420502, 420581, 420602, 420683,
            420821, 420881, 420902, 420981, 420982, 420984, 421002, 421023, 421081, 421083, 421102,
            421122, 421125, 421126, 421127, 421181, 421182, 421202, 421302, 422801,
        ],
    },
    Province {
        name: "江西",
        weight: 80,
        counties: &[
            360102, 360121, 360302, 360424, 360481, 360502, 360681, 360721, 360722, 360726, 360728,
            360729, 360730, 360731, 360732, 360734, 360781, 360821, 360881, 360922, 360981, 361021,
            361181,
        ],
    },
    Province {
        name: "河南",
        weight: 60,
        counties: &[
            410102, 410105, 410221, 410322, 410422, 410522, 410721, 410923, 411081, 411122, 411221,
            411302, 411323, 411381, 411421, 411481, 411521, 411522, 411524, 411526, 411527, 411528,
            411621, 411625, 411628, 411721, 411724, 411729,
        ],
    },
    Province {
        name: "四川",
        weight: 40,
        counties: &[
            510104, 510107, 510304, 510522, 510623, 510722, 510821, 510902, 510922, 511002, 511025,
            511102, 511321, 511381, 511421, 511521, 511602, 511702, 511722, 511723, 511724, 511725,
            511902, 512021,
        ],
    },
    Province {
        name: "福建",
        weight: 20,
        counties: &[350102, 350521, 350583, 350681, 350823],
    },
    Province {
        name: "重庆",
        weight: 20,
        counties: &[500101, 500230, 500233, 500235, 500236],
    },
    Province {
        name: "安徽",
        weight: 15,
        counties: &[340102, 341221, 341222, 341225, 341226],
    },
    Province {
        name: "贵州",
        weight: 15,
        counties: &[520102, 520221, 522121, 522422],
    },
    Province {
        name: "山东",
        weight: 6,
        counties: &[370102, 370202, 370781, 371321],
    },
    Province {
        name: "河北",
        weight: 4,
        counties: &[130102, 130682, 131182],
    },
    Province {
        name: "黑龙江",
        weight: 4,
        counties: &[230102, 230202],
    },
    Province {
        name: "吉林",
        weight: 3,
        counties: &[220102, 220202],
    },
    Province {
        name: "辽宁",
        weight: 4,
        counties: &[210102, 210202],
    },
    Province {
        name: "浙江",
        weight: 5,
        counties: &[330102, 330302, 330382],
    },
    Province {
        name: "江苏",
        weight: 5,
        counties: &[320102, 320583, 321302],
    },
    Province {
        name: "北京",
        weight: 2,
        counties: &[110105, 110108],
    },
    Province {
        name: "上海",
        weight: 2,
        counties: &[310104, 310115],
    },
    Province {
        name: "陕西",
        weight: 4,
        counties: &[610102, 610113],
    },
    Province {
        name: "云南",
        weight: 3,
        counties: &[530102, 530381],
    },
    Province {
        name: "甘肃",
        weight: 2,
        counties: &[620102, 620521],
    },
    Province {
        name: "海南",
        weight: 4,
        counties: &[460105, 460106, 469005],
    },
    Province {
        name: "山西",
        weight: 2,
        counties: &[140105, 140802],
    },
    Province {
        name: "内蒙古",
        weight: 1,
        counties: &[150102],
    },
];

/// Surnames of people born in Guangdong, with relative frequencies (per 10,000).
pub const SURNAMES_GUANGDONG: &[(&str, u64)] = &[
    ("陈", 960),
    ("黄", 570),
    ("李", 550),
    ("林", 480),
    ("张", 460),
    ("梁", 360),
    ("刘", 330),
    ("吴", 300),
    ("罗", 270),
    ("何", 240),
    ("郑", 230),
    ("杨", 220),
    ("王", 210),
    ("曾", 200),
    ("钟", 190),
    ("谢", 180),
    ("邓", 160),
    ("周", 160),
    ("叶", 150),
    ("卢", 140),
    ("许", 130),
    ("蔡", 130),
    ("朱", 120),
    ("冯", 120),
    ("苏", 120),
    ("郭", 110),
    ("余", 110),
    ("潘", 110),
    ("赖", 100),
    ("彭", 100),
    ("庄", 90),
    ("廖", 90),
    ("方", 80),
    ("邱", 80),
    ("温", 80),
    ("江", 70),
    ("唐", 70),
    ("徐", 70),
    ("胡", 70),
    ("欧阳", 30),
    ("司徒", 10),
];

/// Surnames across China, with relative frequencies (per 10,000).
pub const SURNAMES_NATIONAL: &[(&str, u64)] = &[
    ("李", 740),
    ("王", 710),
    ("张", 680),
    ("刘", 540),
    ("陈", 460),
    ("杨", 310),
    ("黄", 250),
    ("赵", 230),
    ("吴", 200),
    ("周", 190),
    ("徐", 140),
    ("孙", 140),
    ("马", 130),
    ("朱", 120),
    ("胡", 120),
    ("郭", 110),
    ("何", 110),
    ("林", 100),
    ("高", 100),
    ("罗", 90),
    ("郑", 90),
    ("梁", 80),
    ("谢", 80),
    ("宋", 70),
    ("唐", 70),
    ("许", 70),
    ("韩", 70),
    ("冯", 60),
    ("邓", 60),
    ("曹", 60),
    ("彭", 60),
    ("曾", 60),
    ("肖", 60),
    ("田", 50),
    ("董", 50),
    ("袁", 50),
    ("潘", 50),
    ("于", 50),
    ("蒋", 50),
    ("蔡", 50),
    ("余", 50),
    ("杜", 50),
    ("叶", 40),
    ("程", 40),
    ("苏", 40),
    ("魏", 40),
    ("吕", 40),
    ("丁", 40),
    ("任", 40),
    ("沈", 40),
    ("姚", 40),
    ("卢", 40),
    ("姜", 30),
    ("崔", 30),
    ("钟", 30),
    ("谭", 30),
    ("陆", 30),
    ("汪", 30),
    ("范", 30),
    ("金", 30),
    ("石", 30),
    ("廖", 30),
    ("贾", 30),
    ("夏", 30),
    ("韦", 30),
    ("付", 30),
    ("方", 30),
    ("白", 30),
    ("邹", 30),
    ("孟", 30),
    ("熊", 30),
    ("秦", 30),
    ("邱", 30),
    ("江", 30),
    ("尹", 20),
    ("薛", 20),
    ("闫", 20),
    ("段", 20),
    ("雷", 20),
    ("侯", 20),
    ("龙", 20),
    ("史", 20),
    ("陶", 20),
    ("黎", 20),
    ("贺", 20),
    ("顾", 20),
    ("毛", 20),
    ("郝", 20),
    ("龚", 20),
    ("邵", 20),
    ("万", 20),
    ("钱", 20),
    ("严", 20),
    ("覃", 20),
    ("武", 20),
    ("戴", 20),
    ("莫", 20),
    ("孔", 20),
    ("向", 20),
    ("汤", 20),
];

/// Given-name characters mostly used for men.
pub const GIVEN_MALE: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "斌", "超", "明", "刚", "平", "辉", "鹏", "华", "飞",
    "鑫", "波", "宇", "浩", "凯", "健", "俊", "帆", "帅", "旭", "宁", "龙", "林", "建", "国", "志",
    "文", "海", "东", "兵", "峰", "振", "家", "子", "博", "宏", "晨", "轩", "睿", "泽", "航", "诚",
    "彬", "锋", "坤", "毅", "豪", "荣", "昊", "洋", "亮", "耀", "森", "永",
];

/// Given-name characters mostly used for women.
pub const GIVEN_FEMALE: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "玲", "燕", "萍", "红", "婷", "雪", "琳",
    "慧", "晶", "颖", "倩", "洁", "欣", "怡", "佳", "梅", "莉", "兰", "丹", "月", "悦", "蕾", "薇",
    "琪", "璐", "妍", "雯", "晓", "诗", "梦", "思", "雅", "琴", "凤", "翠", "娇", "露", "瑶", "菲",
];

/// Given-name characters used for both.
pub const GIVEN_NEUTRAL: &[&str] = &[
    "小", "嘉", "文", "明", "春", "晓", "子", "一", "安", "欣", "宁", "清", "新", "天", "永", "金",
    "玉", "云", "海", "彤",
];

/// Characters for enterprise trade names (字号).
pub const TRADE_NAME_CHARS: &[&str] = &[
    "华", "宏", "兴", "盛", "达", "信", "恒", "瑞", "鑫", "源", "泰", "丰", "荣", "昌", "辉", "腾",
    "飞", "创", "新", "科", "智", "联", "佳", "美", "优", "锐", "博", "远", "航", "天", "海", "星",
    "光", "明", "辰", "宇", "东", "南", "中", "鹏", "安", "康", "和", "顺", "利", "富", "金", "银",
    "汇", "通", "广", "德", "正", "诚", "嘉", "润", "祥", "隆", "凯", "越", "卓", "成", "合", "众",
    "力", "勤", "建", "立", "思", "维", "云", "峰", "景", "乐", "欣", "晨", "弘", "域", "泽", "锦",
    "铭", "轩", "誉", "致", "捷", "启", "朗", "灵", "晟", "禾", "悦", "睿", "臻", "骏", "鸿", "森",
    "迪", "菲", "尚", "品", "雅", "艺", "彩", "蓝", "青", "凤", "龙", "豪", "威", "振", "宝", "路",
    "方", "高", "万", "亿", "百", "千", "特", "奥", "深", "湾", "前", "粤", "港", "晖",
];

/// A GB/T 4754-2017 section (门类).
pub struct Industry {
    pub section: &'static str,
    pub name: &'static str,
    /// Relative share of Shenzhen's registered enterprises.
    pub weight: u64,
    /// Relative employees per enterprise, all else equal.
    pub staff_factor: u64,
    /// Words that end enterprise names in this section (before 有限公司).
    pub name_words: &'static [&'static str],
}

/// The twenty sections A–T.
#[rustfmt::skip]
pub const INDUSTRIES: &[Industry] = &[
    Industry { section: "A", name: "农、林、牧、渔业", weight: 30, staff_factor: 3, name_words: &["农业科技", "生态农业", "渔业", "园艺"] },
    Industry { section: "B", name: "采矿业", weight: 5, staff_factor: 6, name_words: &["矿业"] },
    Industry { section: "C", name: "制造业", weight: 1000, staff_factor: 12, name_words: &["电子", "精密制造", "五金制品", "塑胶制品", "电子科技", "智能装备", "新材料", "光电", "服装", "家具"] },
    Industry { section: "D", name: "电力、热力、燃气及水生产和供应业", weight: 20, staff_factor: 8, name_words: &["能源", "新能源", "电力工程"] },
    Industry { section: "E", name: "建筑业", weight: 400, staff_factor: 8, name_words: &["建筑工程", "装饰工程", "建设", "机电工程"] },
    Industry { section: "F", name: "批发和零售业", weight: 3500, staff_factor: 2, name_words: &["贸易", "商贸", "供应链", "实业", "电子商务", "进出口", "百货"] },
    Industry { section: "G", name: "交通运输、仓储和邮政业", weight: 350, staff_factor: 5, name_words: &["物流", "国际货运代理", "运输", "快递"] },
    Industry { section: "H", name: "住宿和餐饮业", weight: 250, staff_factor: 4, name_words: &["餐饮管理", "酒店管理", "餐饮"] },
    Industry { section: "I", name: "信息传输、软件和信息技术服务业", weight: 1200, staff_factor: 5, name_words: &["科技", "信息技术", "网络科技", "软件", "数据科技", "智能科技"] },
    Industry { section: "J", name: "金融业", weight: 150, staff_factor: 6, name_words: &["投资", "资产管理", "商业保理", "融资租赁"] },
    Industry { section: "K", name: "房地产业", weight: 300, staff_factor: 4, name_words: &["房地产开发", "物业管理", "置业"] },
    Industry { section: "L", name: "租赁和商务服务业", weight: 1300, staff_factor: 3, name_words: &["商务咨询", "企业管理", "文化传播", "广告", "人力资源", "管理咨询"] },
    Industry { section: "M", name: "科学研究和技术服务业", weight: 900, staff_factor: 4, name_words: &["检测技术", "设计", "生物科技", "技术服务", "工程技术"] },
    Industry { section: "N", name: "水利、环境和公共设施管理业", weight: 30, staff_factor: 5, name_words: &["环保科技", "环境工程", "园林绿化"] },
    Industry { section: "O", name: "居民服务、修理和其他服务业", weight: 200, staff_factor: 2, name_words: &["家政服务", "汽车维修", "美容"] },
    Industry { section: "P", name: "教育", weight: 50, staff_factor: 4, name_words: &["教育科技", "培训"] },
    Industry { section: "Q", name: "卫生和社会工作", weight: 30, staff_factor: 8, name_words: &["医疗管理", "养老服务"] },
    Industry { section: "R", name: "文化、体育和娱乐业", weight: 200, staff_factor: 3, name_words: &["文化传媒", "体育发展", "影视", "娱乐"] },
    Industry { section: "S", name: "公共管理、社会保障和社会组织", weight: 5, staff_factor: 4, name_words: &["公共服务"] },
    // Enterprises are never international organisations; listed for completeness.
    Industry { section: "T", name: "国际组织", weight: 0, staff_factor: 1, name_words: &["国际交流"] },
];

/// Enterprise registration status (登记状态) and base weight.
pub const STATUSES: &[&str] = &["存续", "在业", "注销", "吊销", "迁出"];

/// A hospital: name, index into [`DISTRICTS`], relative volume of claims.
pub struct Hospital {
    pub name: &'static str,
    pub district: usize,
    pub weight: u64,
}

/// Index of special-purpose hospitals in [`HOSPITALS`].
pub const H_KANGNING: usize = 29;
pub const H_EYE: usize = 30;
pub const H_MATERNAL: usize = 8;
pub const H_CANCER: usize = 13;

/// Shenzhen hospitals covered by basic medical insurance.
pub const HOSPITALS: &[Hospital] = &[
    Hospital {
        name: "北京大学深圳医院",
        district: 0,
        weight: 10,
    },
    Hospital {
        name: "深圳市人民医院",
        district: 1,
        weight: 12,
    },
    Hospital {
        name: "香港大学深圳医院",
        district: 0,
        weight: 9,
    },
    Hospital {
        name: "南方医科大学深圳医院",
        district: 4,
        weight: 6,
    },
    Hospital {
        name: "深圳市第二人民医院",
        district: 0,
        weight: 10,
    },
    Hospital {
        name: "深圳市第三人民医院",
        district: 5,
        weight: 5,
    },
    Hospital {
        name: "深圳市中医院",
        district: 0,
        weight: 6,
    },
    Hospital {
        name: "深圳市儿童医院",
        district: 0,
        weight: 1,
    },
    Hospital {
        name: "深圳市妇幼保健院",
        district: 0,
        weight: 5,
    },
    Hospital {
        name: "中山大学附属第七医院",
        district: 8,
        weight: 5,
    },
    Hospital {
        name: "中山大学附属第八医院",
        district: 0,
        weight: 4,
    },
    Hospital {
        name: "深圳大学总医院",
        district: 2,
        weight: 4,
    },
    Hospital {
        name: "南方科技大学医院",
        district: 2,
        weight: 3,
    },
    Hospital {
        name: "中国医学科学院肿瘤医院深圳医院",
        district: 5,
        weight: 3,
    },
    Hospital {
        name: "华中科技大学协和深圳医院",
        district: 2,
        weight: 7,
    },
    Hospital {
        name: "深圳市宝安区人民医院",
        district: 4,
        weight: 8,
    },
    Hospital {
        name: "深圳市宝安区中心医院",
        district: 4,
        weight: 5,
    },
    Hospital {
        name: "深圳市龙岗中心医院",
        district: 5,
        weight: 7,
    },
    Hospital {
        name: "深圳市龙岗区人民医院",
        district: 5,
        weight: 6,
    },
    Hospital {
        name: "深圳市龙华区人民医院",
        district: 6,
        weight: 6,
    },
    Hospital {
        name: "深圳市龙华区中心医院",
        district: 6,
        weight: 5,
    },
    Hospital {
        name: "深圳市罗湖区人民医院",
        district: 1,
        weight: 5,
    },
    Hospital {
        name: "深圳市盐田区人民医院",
        district: 3,
        weight: 3,
    },
    Hospital {
        name: "深圳市坪山区人民医院",
        district: 7,
        weight: 4,
    },
    Hospital {
        name: "深圳市光明区人民医院",
        district: 8,
        weight: 4,
    },
    Hospital {
        name: "深圳市大鹏新区南澳人民医院",
        district: 9,
        weight: 2,
    },
    Hospital {
        name: "深圳市大鹏新区葵涌人民医院",
        district: 9,
        weight: 1,
    },
    Hospital {
        name: "深圳市福田区第二人民医院",
        district: 0,
        weight: 2,
    },
    Hospital {
        name: "深圳市南山区蛇口人民医院",
        district: 2,
        weight: 3,
    },
    Hospital {
        name: "深圳市康宁医院",
        district: 1,
        weight: 2,
    },
    Hospital {
        name: "深圳市眼科医院",
        district: 0,
        weight: 2,
    },
];

/// An ICD-10 chapter: roman numeral, Chinese title, relative frequency of claims.
pub struct Chapter {
    pub roman: &'static str,
    pub name: &'static str,
    pub weight: u64,
    /// Frequency grows with age (chronic conditions).
    pub ageing: bool,
    /// Probability (per mille) that a claim is an inpatient stay.
    pub inpatient_permille: u64,
    /// Cost multiplier in percent.
    pub cost_percent: u64,
}

/// Index of chapter XV (pregnancy) in [`CHAPTERS`].
pub const CH_PREGNANCY: usize = 14;
/// Index of chapter II (neoplasms) in [`CHAPTERS`].
pub const CH_NEOPLASMS: usize = 1;
/// Index of chapter V (mental disorders) in [`CHAPTERS`].
pub const CH_MENTAL: usize = 4;
/// Index of chapter VII (eye) in [`CHAPTERS`].
pub const CH_EYE: usize = 6;

/// The 22 chapters of ICD-10 (GB/T 14396 Chinese titles).
#[rustfmt::skip]
pub const CHAPTERS: &[Chapter] = &[
    Chapter { roman: "I", name: "某些传染病和寄生虫病", weight: 25, ageing: false, inpatient_permille: 60, cost_percent: 100 },
    Chapter { roman: "II", name: "肿瘤", weight: 40, ageing: true, inpatient_permille: 300, cost_percent: 250 },
    Chapter { roman: "III", name: "血液及造血器官疾病和涉及免疫机制的某些疾患", weight: 7, ageing: false, inpatient_permille: 80, cost_percent: 120 },
    Chapter { roman: "IV", name: "内分泌、营养和代谢疾病", weight: 50, ageing: true, inpatient_permille: 30, cost_percent: 90 },
    Chapter { roman: "V", name: "精神和行为障碍", weight: 20, ageing: false, inpatient_permille: 50, cost_percent: 110 },
    Chapter { roman: "VI", name: "神经系统疾病", weight: 25, ageing: true, inpatient_permille: 60, cost_percent: 120 },
    Chapter { roman: "VII", name: "眼和附器疾病", weight: 40, ageing: false, inpatient_permille: 30, cost_percent: 80 },
    Chapter { roman: "VIII", name: "耳和乳突疾病", weight: 15, ageing: false, inpatient_permille: 20, cost_percent: 70 },
    Chapter { roman: "IX", name: "循环系统疾病", weight: 100, ageing: true, inpatient_permille: 90, cost_percent: 150 },
    Chapter { roman: "X", name: "呼吸系统疾病", weight: 180, ageing: false, inpatient_permille: 30, cost_percent: 80 },
    Chapter { roman: "XI", name: "消化系统疾病", weight: 120, ageing: false, inpatient_permille: 50, cost_percent: 100 },
    Chapter { roman: "XII", name: "皮肤和皮下组织疾病", weight: 40, ageing: false, inpatient_permille: 10, cost_percent: 60 },
    Chapter { roman: "XIII", name: "肌肉骨骼系统和结缔组织疾病", weight: 90, ageing: true, inpatient_permille: 40, cost_percent: 110 },
    Chapter { roman: "XIV", name: "泌尿生殖系统疾病", weight: 60, ageing: false, inpatient_permille: 50, cost_percent: 100 },
    Chapter { roman: "XV", name: "妊娠、分娩和产褥期", weight: 25, ageing: false, inpatient_permille: 400, cost_percent: 100 },
    Chapter { roman: "XVI", name: "起源于围生期的某些情况", weight: 1, ageing: false, inpatient_permille: 300, cost_percent: 100 },
    Chapter { roman: "XVII", name: "先天性畸形、变形和染色体异常", weight: 3, ageing: false, inpatient_permille: 200, cost_percent: 150 },
    Chapter { roman: "XVIII", name: "症状、体征和临床与实验室异常所见，不可归类在他处者", weight: 60, ageing: false, inpatient_permille: 20, cost_percent: 70 },
    Chapter { roman: "XIX", name: "损伤、中毒和外因的某些其他后果", weight: 50, ageing: false, inpatient_permille: 80, cost_percent: 120 },
    Chapter { roman: "XX", name: "疾病和死亡的外因", weight: 2, ageing: false, inpatient_permille: 50, cost_percent: 100 },
    Chapter { roman: "XXI", name: "影响健康状态和与保健机构接触的因素", weight: 40, ageing: false, inpatient_permille: 5, cost_percent: 60 },
    Chapter { roman: "XXII", name: "用于特殊目的的编码", weight: 7, ageing: false, inpatient_permille: 30, cost_percent: 100 },
];
