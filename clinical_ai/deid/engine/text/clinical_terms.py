"""Clinical vocabulary that NER must not take for a person, an organisation or a place.

spaCy's small English model was trained on news: it tags "simvastatin" as a person, "preeclampsia" as a
place and "COPD" as an organisation. A span whose every word is clinical vocabulary (or a drug by its stem)
is therefore not an identifier. Eponyms are names of diseases, not people, when a disease word follows
("Parkinson's disease", "Glasgow Coma Scale"); a few are diseases on their own ("history of Alzheimer's").
Everything here is lower case; matching is on words (``[a-z0-9]+`` after lower-casing).
"""

from __future__ import annotations

import re
import unicodedata


def word_set(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` (long word lists read better as text)."""
    return frozenset(text.split())


ABBREVIATIONS = word_set(
    """
    icu hdu ccu nicu picu itu ed er ae ane ecg ekg eeg emg ncs ct cta ctpa mri mra mrcp pet spect cxr xr
    xray us usg echo tte tee ogd egd ercp eus colonoscopy copd chf ccf cad ihd cabg pci ptca mi stemi nstemi
    acs af afib vt vf svt dvt pe vte cva tia sah sdh ich uti urti lrti cap hap vap aki ckd esrd gerd gord
    ibd ibs uc ards osa dka hhs t1dm t2dm dm iddm niddm htn hld hf hfref hfpef lvef ef bph hiv aids hcv hbv
    hav hep tb mrsa mssa vre esbl cdiff cdi covid sars cov rsv ptsd adhd ocd gad mdd bmi bp sbp dbp map hr
    rr spo2 sao2 pao2 paco2 o2 fio2 temp gcs avpu news news2 mews qsofa sofa apache cbc fbc bmp cmp lft lfts
    ue crp esr pct inr pt ptt aptt hb hgb hba1c a1c wbc rbc plt mcv egfr gfr bun cr tsh ft4 t4 t3 psa ldl
    hdl tg alt ast alp ggt ck bnp ntprobnp probnp trop abg vbg k na cl hco3 po iv im sc sq sl pr prn bd bid
    tds tid qds qid od qd qhs qam qpm stat nbm npo dnr dnacpr ama dx ddx hx pmh psh fh sh rx tx sx fx ros
    hpi cc ap oe sob cp loc nv nad wnl mg mcg ug ml mmol kg mmhg bpm iu gp md rn np pa nhs nice cdc who
    mdt opd ot pt slt salt picc cvc ngt ng peg rig cpap bipap niv ippv ett lma ecmo iabp lvad icd ppm crt
    dob nok mrn dexa dxa ivf ivig ffp prbc rbc tpn ppn eras ortho neuro cardio gi gu ent obgyn ob gyn peds paeds
    """
)

# More abbreviations, scores and tests in common use (UK and US), by kind. Written as they are read: "U&E",
# "CURB-65", "CHA2DS2-VASc" and "NT-proBNP" are matched by their letters and digits run together ("ue",
# "curb65", "cha2ds2vasc", "ntprobnp": :func:`is_clinical_term`). Words that are also given names or
# surnames ("Grace", "Wells", "Duke") are not here: they count only before their score's word
# (:data:`SURNAME_EPONYMS`).
ABBREVIATIONS = ABBREVIATIONS | word_set(
    """
    curb65 crb65 curb qsofa sofa apache apache2 apacheii must mna mnas nihss timi heart perc
    abcd2 cha2ds2vasc chads2 chadsvasc hasbled orbit phq9 phq gad7 audit auditc moca mmse amts 4at amt
    ecog nyha ccs killip mews pews news2 frax qrisk qrisk2 qrisk3 ipss hads ess stopbang bbps mrc mrcs
    das28 basdai pasi scorad eq5d ppi pps akps rass cpot fast befast rosier abcd edss updrs cdai hbi sccai
    fbc ue ues lft lfts tft tfts crp egfr inr coag coags wcc mch mchc rdw hct ldh ckmb amylase lipase
    ferritin b12 folate ddimer dimer cea ca125 ca199 ca153 afp hcg bhcg igg iga igm ige ana anca dsdna rf
    anticcp ccp pth acth cortisol msu csu ua urinalysis uacr acr pcr ogtt gtt fit fobt qfit bnp ntprobnp
    hscrp procalcitonin fev1 fvc pef pefr dlco kco tlco spirometry abpm hbpm
    tte tee ctca ctkub kub axr ivu ctc ctap ctcap petct ogd emr esd eus ercp rfa tace tavi tavr savr
    avr mvr ppci evar lp eua turbt turp tah bso lscs svd ecv ctg efw afi nipt iui dre pr cvp avf avg
    hd pd crrt cvvh cvvhdf rrt ogt hfnc hfno peep simv cpap ecmo ivc svc smv sma ima cbd ruq luq rif lif
    rlq llq mca aca pca ica eca dwi swi flair adc stir mrv cta ctp ecg echo holter ett icp evd vp
    stemi nstemi acs lbbb rbbb avb avnrt wpw hocm dcm lvh lvsd rvsd hfmref pvd pad aaa cva tia mnd gbs
    cidp sle gca pmr sjs oa ra axspa psa pud ugib lgib hcc nafld masld nash pbc psc aih sbp gdm pcos pid
    pph aph iugr fgr sga lga pprom srom ild ipf uip nsip ohs cf ptx lrti urti cap hap vap nec rds hie
    asd bpad eupd sud aud mdd ocd cbt dbt emdr ect cmht crht iapt cpn opat ambu mdt dnacpr dnar dni cpr
    bls als rosc acp lpa dols imca respect ehr epr emr emis systmone
    gcsf nsaid nsaids crcl acl pcl mcl amd rem lad lcx rca lmca lms
    abvd rchop chop folfox folfiri capox xelox ecf bep ac tc fec beacopp ctx rt sabr imrt chemo
    """
)

SECTION_AND_CLINICAL_WORDS = word_set(
    """
    patient patients history present illness social family medical surgical past assessment plan plans
    chief complaint complaints allergy allergies known medication medications medicine medicines active
    immunization immunizations immunisation immunisations vaccine vaccines vaccination procedure procedures
    examination exam impression diagnosis diagnoses review systems vitals vital signs sign symptoms symptom
    labs lab laboratory results result findings discharge admission admitted summary note notes progress
    consult consultation referral follow up followup clinic theatre department emergency intensive
    care unit outpatient inpatient primary secondary tertiary acute chronic severe mild moderate stable
    unstable positive negative normal abnormal bilateral left right lower upper anterior posterior lateral
    medial proximal distal chest abdomen abdominal head neck back spine limb limbs heart cardiac lung lungs
    pulmonary renal kidney kidneys liver hepatic brain cerebral skin bone bones joint joints blood serum
    plasma urine stool sputum ray x scan ultrasound imaging radiograph biopsy culture swab test tests
    screening count panel level levels pressure rate saturation oxygen glucose sugar cholesterol sodium
    potassium creatinine urea hemoglobin haemoglobin albumin bilirubin troponin lactate ferritin vitamin
    body mass index weight height temperature pulse respiratory respiration heart
    type stage grade class acute exacerbation infection infections inflammation injury injuries fracture
    fractures disorder disorders disease diseases syndrome condition conditions finding situation
    diabetes mellitus hypertension hypotension hyperlipidemia hyperlipidaemia dyslipidemia pneumonia sepsis
    septic shock asthma bronchitis bronchiolitis emphysema fibrosis cancer carcinoma neoplasm tumor tumour
    malignancy metastasis metastatic lymphoma leukemia leukaemia melanoma sarcoma myeloma adenoma polyp
    stroke infarction ischemia ischaemia angina arrhythmia fibrillation flutter tachycardia bradycardia
    failure insufficiency regurgitation stenosis murmur thrombosis embolism aneurysm dissection anemia
    anaemia neutropenia thrombocytopenia coagulopathy hemorrhage haemorrhage bleeding hematoma haematoma
    obesity overweight underweight malnutrition dehydration hyponatremia hyperkalemia hypokalemia
    hypoglycemia hyperglycemia ketoacidosis neuropathy nephropathy retinopathy gastroenteritis colitis
    appendicitis cholecystitis pancreatitis hepatitis cirrhosis jaundice gastritis ulcer reflux dyspepsia
    constipation diarrhea diarrhoea vomiting nausea dysphagia cellulitis abscess osteomyelitis arthritis
    osteoarthritis rheumatoid gout osteoporosis osteopenia lupus psoriasis eczema dermatitis urticaria
    anaphylaxis allergic rhinitis sinusitis otitis pharyngitis tonsillitis laryngitis conjunctivitis
    influenza flu measles mumps rubella varicella zoster herpes shingles pertussis tetanus diphtheria
    polio hpv meningitis encephalitis epilepsy seizure seizures migraine headache dementia delirium
    depression anxiety schizophrenia bipolar psychosis autism insomnia alcoholism alcoholic alcohol
    smoker smoking tobacco substance abuse dependence overdose pregnancy pregnant prenatal antenatal
    postnatal postpartum eclampsia preeclampsia gestational miscarriage abortion labor labour delivery
    cesarean caesarean contraception contraceptive iud implant menopause infertility endometriosis
    hypothyroidism hyperthyroidism goiter goitre cystitis pyelonephritis prostatitis incontinence
    retention calculus stones gallstones hernia sprain strain laceration contusion burn wound
    wounds concussion whiplash dislocation amputation palsy paralysis paresis weakness numbness
    fever pyrexia cough coughing wheeze wheezing breathlessness dyspnea dyspnoea pain ache tenderness
    swelling edema oedema rash itch pruritus fatigue malaise syncope dizziness vertigo confusion
    productive dry wet crackles rales rhonchi consolidation effusion collapse atelectasis
    mellitus prediabetes hypertriglyceridemia nephrolithiasis urolithiasis sinusitis viral bacterial
    fungal community acquired nosocomial aspiration pneumothorax hemothorax respiratory distress arrest
    hyperlipidemia anemia sickle cell trait thalassemia hemophilia immunodeficiency transplant dialysis
    chemotherapy radiotherapy radiation therapy physiotherapy rehabilitation surgery operation operative
    postoperative preoperative anesthesia anaesthesia sedation intubation ventilation extubation
    catheter catheterization cannula line drain stent pacemaker defibrillator prosthesis graft bypass
    reconciliation counseling counselling education assessment screening evaluation management
    injection infusion tablet tablets capsule capsules oral topical inhaler inhalation nebulizer
    nebuliser solution suspension cream ointment patch drops spray syrup dose doses dosage daily
    weekly monthly hourly twice once nightly morning evening night bedtime hour hours day days week
    weeks month months year years old age aged apgar intravenous subcutaneous intramuscular sublingual
    transdermal inhaled nasal rectal vaginal ophthalmic otic hydrochloride hcl systolic diastolic tab tabs
    hep influenza seasonal injectable preservative td tdap dtap ipv mmr hib pcv pcv13 ppsv23 hpv
    pneumococcal meningococcal conjugate polysaccharide adult pediatric paediatric
    registrar consultant specialty specialist physician surgeon anaesthetist anesthetist radiologist
    pharmacist physiotherapist therapist dietitian dietician midwife paramedic hospitalist intern resident
    male female man woman boy girl child infant newborn adolescent elderly
    married single divorced widowed homeless employed unemployed retired
    asian hispanic latino non caucasian
    married heterosexual homosexual bisexual socioeconomic background college courses high school
    insurance insured uninsured coverage payer
    advanced early late onset end recurrent relapsing remitting progressive refractory resistant
    """
)

# Payers (whole names) are not Safe Harbor identifiers and say something about access to care.
PAYERS = frozenset(
    {
        "medicare",
        "medicaid",
        "aetna",
        "anthem",
        "cigna",
        "cigna health",
        "humana",
        "unitedhealthcare",
        "united healthcare",
        "blue cross blue shield",
        "blue cross",
        "blue shield",
        "tricare",
        "bupa",
        "centene",
        "molina",
        "wellcare",
        "dual eligible",
        "no insurance",
    }
)

DRUGS = word_set(
    """
    metformin insulin glargine lispro aspart detemir degludec glipizide glyburide glibenclamide gliclazide
    glimepiride sitagliptin linagliptin saxagliptin empagliflozin dapagliflozin canagliflozin liraglutide
    semaglutide dulaglutide exenatide pioglitazone lisinopril enalapril ramipril perindopril captopril
    losartan valsartan irbesartan candesartan olmesartan telmisartan amlodipine nifedipine felodipine
    diltiazem verapamil atenolol bisoprolol metoprolol carvedilol propranolol nebivolol labetalol
    hydrochlorothiazide chlorthalidone indapamide bendroflumethiazide furosemide frusemide bumetanide
    torsemide spironolactone eplerenone doxazosin hydralazine clonidine atorvastatin simvastatin
    rosuvastatin pravastatin lovastatin ezetimibe fenofibrate aspirin clopidogrel ticagrelor prasugrel
    warfarin heparin enoxaparin dalteparin apixaban rivaroxaban dabigatran edoxaban digoxin amiodarone
    sotalol flecainide nitroglycerin glyceryl trinitrate isosorbide mononitrate ranolazine ivabradine
    sacubitril amoxicillin ampicillin penicillin flucloxacillin dicloxacillin piperacillin tazobactam
    augmentin clavulanate cephalexin cefalexin cefuroxime ceftriaxone cefazolin cefepime ceftazidime
    meropenem ertapenem imipenem vancomycin teicoplanin linezolid daptomycin gentamicin amikacin
    tobramycin azithromycin clarithromycin erythromycin doxycycline minocycline tetracycline
    ciprofloxacin levofloxacin moxifloxacin trimethoprim sulfamethoxazole nitrofurantoin fosfomycin
    metronidazole clindamycin rifampicin rifampin isoniazid pyrazinamide ethambutol fluconazole
    itraconazole voriconazole nystatin terbinafine acyclovir aciclovir valacyclovir oseltamivir
    remdesivir paracetamol acetaminophen ibuprofen naproxen diclofenac celecoxib indomethacin
    ketorolac codeine tramadol morphine oxycodone hydrocodone hydromorphone fentanyl buprenorphine
    methadone naloxone tapentadol gabapentin pregabalin amitriptyline nortriptyline duloxetine
    venlafaxine sertraline fluoxetine citalopram escitalopram paroxetine mirtazapine trazodone
    bupropion lithium valproate valproic lamotrigine levetiracetam carbamazepine phenytoin topiramate
    quetiapine olanzapine risperidone aripiprazole haloperidol clozapine lorazepam diazepam
    clonazepam alprazolam midazolam temazepam zopiclone zolpidem melatonin donepezil memantine
    rivastigmine galantamine levodopa carbidopa ropinirole pramipexole methylphenidate
    omeprazole esomeprazole lansoprazole pantoprazole ranitidine famotidine ondansetron
    metoclopramide domperidone prochlorperazine loperamide lactulose senna docusate bisacodyl
    macrogol mesalamine mesalazine sulfasalazine azathioprine mercaptopurine methotrexate
    infliximab adalimumab etanercept rituximab tocilizumab prednisone prednisolone
    methylprednisolone hydrocortisone dexamethasone budesonide fluticasone beclomethasone
    salbutamol albuterol salmeterol formoterol tiotropium ipratropium montelukast theophylline
    levothyroxine thyroxine carbimazole methimazole propylthiouracil alendronate risedronate
    zoledronic denosumab calcium colecalciferol cholecalciferol ergocalciferol folic ferrous
    sulfate sulphate iron cyanocobalamin thiamine allopurinol febuxostat colchicine tamsulosin
    finasteride oxybutynin sildenafil tadalafil estradiol progesterone medroxyprogesterone
    levonorgestrel norethisterone etonogestrel ethinyl mirena kyleena nexplanon yaz natazia seasonique trinessa loestrin tamoxifen letrozole anastrozole
    cisplatin carboplatin oxaliplatin paclitaxel docetaxel doxorubicin cyclophosphamide
    fluorouracil capecitabine gemcitabine pembrolizumab nivolumab trastuzumab bevacizumab
    epinephrine adrenaline norepinephrine noradrenaline dopamine dobutamine vasopressin
    atropine adenosine amiodarone lidocaine lignocaine bupivacaine propofol ketamine
    suxamethonium rocuronium vecuronium neostigmine sugammadex glucagon dextrose saline
    albumin potassium chloride magnesium phosphate bicarbonate
    nicotine varenicline naltrexone acamprosate disulfiram epipen hydroxychloroquine
    cetirizine loratadine fexofenadine diphenhydramine chlorphenamine promethazine
    mupirocin fusidic clotrimazole miconazole permethrin ivermectin albendazole
    """
)

# Drug name stems (INN suffixes); a word ending in one of these is a drug, not a name.
DRUG_SUFFIXES = (
    "statin",
    "pril",
    "sartan",
    "olol",
    "alol",
    "dipine",
    "azole",
    "mycin",
    "micin",
    "cillin",
    "floxacin",
    "cycline",
    "cef",
    "prazole",
    "tidine",
    "gliptin",
    "gliflozin",
    "glutide",
    "glitazone",
    "parin",
    "xaban",
    "gatran",
    "mab",
    "tinib",
    "oxetine",
    "azepam",
    "azolam",
    "triptan",
    "ciclovir",
    "cyclovir",
    "profen",
    "olone",
    "sonide",
    "asone",
    "terol",
    "tropium",
    "caine",
    "azosin",
    "semide",
    "thiazide",
    "codone",
    "morphone",
    "setron",
    "pramine",
    "triptyline",
    "peridone",
    "apine",
    "lukast",
    "dronate",
    "vastatin",
    "afil",
    "formin",
)

# Eponyms that are rarely anyone's surname: a disease word after them is enough.
EPONYMS = word_set(
    """
    parkinson alzheimer crohn hodgkin addison cushing hashimoto tourette huntington guillain barre raynaud
    sjogren kawasaki marfan asperger meniere paget wernicke korsakoff gehrig munchausen reiter kaposi ewing
    wilms burkitt horner dupuytren colles apgar glasgow gleason babinski homan homans kernig brudzinski
    trendelenburg valsalva heimlich foley whipple nissen billroth behcet kussmaul cheyne virchow lyme
    epstein barr tay sachs niemann gaucher fabry pompe klinefelter noonan prader willi angelman rett
    duchenne charcot friedreich creutzfeldt jakob zollinger ellison peyronie legionnaires legg perthes
    osgood schlatter scheuermann bankart monteggia galeazzi boutonniere mallory zenker meckel hirschsprung
    wolff brugada lown ganong takotsubo prinzmetal dressler mcburney rovsing tinel phalen finkelstein
    lachman mcmurray apley spurling lhermitte romberg rinne snellen ishihara hallpike epley caprini
    folstein braden waterlow barthel karnofsky pugh ranson rockall blatchford alvarado centor mcisaac
    breslow tinetti hoehn yahr deauville fleischner cockcroft gault kellgren mallampati
    """
)

# Eponyms that are also common surnames: only the named disease, sign or score counts, so that
# "Mr Smith's test" stays a person.
SURNAME_EPONYMS: dict[str, frozenset[str]] = {
    "wilson": frozenset({"disease"}),
    "bell": frozenset({"palsy"}),
    "down": frozenset({"syndrome"}),
    "turner": frozenset({"syndrome", "sign"}),
    "still": frozenset({"disease"}),
    "graves": frozenset({"disease", "ophthalmopathy"}),
    "wells": frozenset({"score", "criteria"}),
    "child": frozenset({"pugh"}),
    "grey": frozenset({"turner"}),
    "beck": frozenset({"triad"}),
    "smith": frozenset({"fracture"}),
    "jones": frozenset({"fracture"}),
    "bennett": frozenset({"fracture"}),
    "murphy": frozenset({"sign"}),
    "cullen": frozenset({"sign"}),
    "barrett": frozenset({"esophagus", "oesophagus"}),
    "baker": frozenset({"cyst"}),
    "becker": frozenset({"dystrophy"}),
    "white": frozenset({"syndrome"}),
    "parkinson": frozenset({"white"}),
    "pick": frozenset({"disease"}),
    "conn": frozenset({"syndrome"}),
    "lewy": frozenset({"body", "bodies", "dementia"}),
    "marie": frozenset({"tooth"}),
    "tooth": frozenset({"disease"}),
    "weiss": frozenset({"tear"}),
    "stokes": frozenset({"respiration", "breathing"}),
    "hamilton": frozenset({"depression", "anxiety"}),
    "beers": frozenset({"criteria"}),
    "norton": frozenset({"scale", "score"}),
    "hawkins": frozenset({"test", "sign"}),
    "kennedy": frozenset({"disease", "ulcer"}),
    "grace": frozenset({"score", "risk"}),
    "harvey": frozenset({"bradshaw"}),
    "bradshaw": frozenset({"index", "score"}),
    "lawrence": frozenset({"grade", "classification", "score"}),
    "duke": frozenset({"criteria"}),
    "janeway": frozenset({"lesion", "lesions"}),
    "dawson": frozenset({"fingers"}),
    "mcdonald": frozenset({"criteria"}),
    "hartmann": frozenset({"procedure", "pouch", "operation", "solution"}),
    "rankin": frozenset({"scale", "score"}),
    "boston": frozenset({"bowel"}),
    "richmond": frozenset({"agitation"}),
    "bristol": frozenset({"stool"}),
    "epworth": frozenset({"sleepiness"}),
}

# Eponyms that name a disease even as a bare possessive ("a history of Alzheimer's").
EPONYMOUS_DISEASES = word_set(
    """
    parkinson alzheimer crohn hodgkin huntington addison cushing hashimoto raynaud sjogren meniere paget
    tourette asperger kawasaki behcet gehrig
    """
)

EPONYM_FOLLOWERS = word_set(
    """
    disease diseases syndrome syndromes sign signs score scores scale scales criteria palsy lymphoma sarcoma
    tumor tumour test tests maneuver manoeuvre catheter procedure operation fracture cyst ulcer esophagus
    oesophagus dementia chorea thyroiditis encephalopathy psychosis phenomenon reflex triad classification
    stage staging position ataxia dystrophy anomaly node nodes method technique repair fundoplication pouch
    diverticulum disorder deformity contracture angina arthritis lesion lesions bodies body coma index
    rule rules sclerosis point tear lymphadenopathy mononucleosis virus pattern wave waves respiration
    breathing herpes hernia pneumonia stool chart type grade grades guideline guidelines fingers
    surveillance equation formula class
    """
)

# Titles before a name and letters after it: kept in the text ("Dr [PERSON-…]"), never a name themselves.
TITLES = word_set("mr mrs ms miss mx dr prof professor doctor sir dame lady lord rev fr master madam mme")
NAME_SUFFIXES = word_set("jr sr ii iii iv phd md esq")

_WORD = re.compile(r"[a-z0-9]+")
# One token of letters and digits joined by "&", "-", "/" or "+" ("U&E", "CURB-65"), not initials ("R.A.").
_JOINED_ABBREVIATION = re.compile(r"[A-Za-z0-9]+(?:[&/+\-][A-Za-z0-9]+)+")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without accents; "Parkinson's" gives ["parkinson", "s"], "SpO2"
    ["spo2"], "Sjögren" ["sjogren"]."""
    if not text.isascii():
        text = "".join(
            char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char)
        )
    return _WORD.findall(text.lower())


def is_drug_word(word: str) -> bool:
    return word in DRUGS or (len(word) > 6 and word.endswith(DRUG_SUFFIXES))


def is_clinical_word(word: str) -> bool:
    return (
        word in ABBREVIATIONS
        or word in SECTION_AND_CLINICAL_WORDS
        or word in PAYERS
        or is_drug_word(word)
        or word.isdigit()
    )


def is_clinical_term(text: str) -> bool:
    """Whether ``text`` as a whole is clinical vocabulary: every word clinical, or an abbreviation written
    with punctuation inside ("U&E", "CURB-65", "NT-proBNP": their letters and digits run together)."""
    parts = words(text)
    if not parts:
        return False
    if all(is_clinical_word(part) for part in parts):
        return True
    return _JOINED_ABBREVIATION.fullmatch(text.strip()) is not None and "".join(parts) in ABBREVIATIONS


def is_eponym_use(text: str, start: int, end: int, *, allow_bare: bool) -> bool:
    """Whether ``text[start:end]`` names a disease, sign or score after a person ("Parkinson's disease",
    "Glasgow Coma Scale", "Wells score"), not a person. ``allow_bare`` also accepts "Alzheimer's" alone."""
    inside = [word for word in words(text[start:end]) if word != "s"]
    after = words(text[end : end + 80])
    sequence = inside + after
    chain: list[str] = []
    index = 0
    while index < len(sequence) and (sequence[index] in EPONYMS or sequence[index] in SURNAME_EPONYMS):
        chain.append(sequence[index])
        index += 1
        while index < len(sequence) and sequence[index] == "s":
            index += 1
        # Two eponyms joined by "and" name one scale ("Hoehn and Yahr"): the chain goes on past the "and".
        if (
            index + 1 < len(sequence)
            and sequence[index] == "and"
            and sequence[index + 1] in EPONYMS
            and chain[-1] in EPONYMS
        ):
            index += 1
    if not chain:
        return False
    follower = sequence[index] if index < len(sequence) else None
    # The span itself must be the eponymous phrase: nothing in it after the disease word but clinical words.
    if any(not (is_clinical_word(word) or word in EPONYM_FOLLOWERS) for word in inside[index + 1 :]):
        return False
    if index < len(inside) and follower not in EPONYM_FOLLOWERS and not _surname_pair(chain, follower):
        return False
    possessive = text[end : end + 2] in ("'s", "\u2019s") or text[start:end].endswith(("'s", "\u2019s"))
    if follower is not None:
        if follower in EPONYM_FOLLOWERS and any(word in EPONYMS for word in chain):
            return True
        if _surname_pair(chain, follower):
            return True
    return allow_bare and possessive and chain[-1] in EPONYMOUS_DISEASES and len(inside) == len(chain)


def _surname_pair(chain: list[str], follower: str | None) -> bool:
    """A common-surname eponym next to the one word that makes it a disease ("Wilson disease")."""
    pairs = zip(chain, [*chain[1:], follower], strict=True)
    return any(nxt is not None and nxt in SURNAME_EPONYMS.get(word, ()) for word, nxt in pairs)
